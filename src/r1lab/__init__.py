"""r1lab: train small language models to reason about math, DeepSeek-R1 style.

The pipeline, and where each part lives:
    data/      -> prompts with reference answers, curated traces (r1lab.data)
    rewards/   -> rule-based rewards and the bounded math verifier (r1lab.rewards)
    models.py  -> resolve a model spec: hub id, local dir, .gguf, smollm2-135m, tiny
    train/     -> GRPO, SFT, rejection sampling on TRL (r1lab.train)
    evaluate.py, inference.py, report.py -> measure, talk to, and picture a model
    pipeline.py -> run a recipe's stages in order, resumably
"""

__version__ = "0.1.0"
