"""CLI verbs of r1lab.cli.evaluate — placeholder until its issue lands; replace this whole file."""

from r1lab.errors import UserError

VERBS: list[str] = []


def register(sub) -> None:  # noqa: D103
    return None


def _not_yet(args):  # pragma: no cover
    raise UserError("this verb is not implemented yet")
