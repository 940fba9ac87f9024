"""Self-describing output folders: config, seeds, package versions and git revision.

Written next to every training and evaluation output, so a number in a paper can be traced
back to exactly what produced it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from fetalheart.utils.io import write_json_atomic, write_text_atomic


def write_run_info(output_dir: str | os.PathLike, cfg=None, extra: dict | None = None,
                   name: str = "env.json") -> Path:
    """Write ``env.json`` (versions, git revision, seed, command line) and ``config.yaml`` if cfg given."""
    from fetalheart.collect_env import collect_env

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "command": sys.argv,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": collect_env(),
    }
    if cfg is not None:
        info["seed"] = int(cfg.SEED)
        info["enhance"] = cfg.INPUT.ENHANCE
        write_text_atomic(out / "config.yaml", cfg.dump())
    info.update(extra or {})
    return write_json_atomic(out / name, info)
