"""Speed measurements of r1lab against baselines; see __main__.py."""
