"""Building runs in tests without files: a dict experiment through the normal validation."""

from __future__ import annotations

from simcore.config.experiment import Experiment, resolve
from simcore.config.validation import validate


def make_run(model="llama-3.1-8b", hardware="h100-sxm", batch=1, prompt=128, output=8, **sections):
    data = {
        "model": model,
        "hardware": hardware,
        "workload": {"kind": "static", "batch_size": batch, "prompt_tokens": prompt, "output_tokens": output},
    }
    for key, value in sections.items():
        data[key] = value
    return resolve(validate(Experiment, data, "test"))
