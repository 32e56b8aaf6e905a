"""`ServiceProcess`: how the local stacks (tests, benches, `make run`) start a service's interpreter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from parley_common.processes import BYTECODE_CACHE, ServiceProcess


def test_a_service_caches_its_bytecode_outside_the_sources_even_under_dontwritebytecode(
    tmp_path: Path,
) -> None:
    """Issue 12 ("every service back within 5 s"): under PYTHONDONTWRITEBYTECODE, set on this machine,
    every restart compiled each of its ~900 modules again, half of a chat restart on a quiet machine and
    CPU-bound on a loaded one. The child writes its bytecode to one cache and reuses it on restart."""
    (tmp_path / "probe_lib.py").write_text("VALUE = 1\n")
    out = tmp_path / "flags.json"
    (tmp_path / "probe_main.py").write_text(
        "import json, os, sys\n"
        "import probe_lib\n"
        "flags = {'dont_write': sys.flags.dont_write_bytecode, 'prefix': sys.pycache_prefix}\n"
        "open(os.environ['PROBE_OUT'], 'w').write(json.dumps(flags))\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1", "PROBE_OUT": str(out)}
    process = ServiceProcess("probe", "probe_main", env).start()
    process.wait(timeout=30)
    assert json.loads(out.read_text()) == {"dont_write": 0, "prefix": str(BYTECODE_CACHE)}
    # Under the cache's mirror of the source directory, not in a __pycache__ next to the source.
    cached = Path(f"{BYTECODE_CACHE}{tmp_path}") / f"probe_lib.{sys.implementation.cache_tag}.pyc"
    assert cached.exists()
    assert not (tmp_path / "__pycache__").exists()


def test_a_bytecode_prefix_the_caller_set_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "flags.json"
    (tmp_path / "probe_prefix.py").write_text(
        "import json, os, sys\nopen(os.environ['PROBE_OUT'], 'w').write(json.dumps(sys.pycache_prefix))\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PYTHONPYCACHEPREFIX": str(tmp_path / "mine"), "PROBE_OUT": str(out)}
    ServiceProcess("probe", "probe_prefix", env).start().wait(timeout=30)
    assert json.loads(out.read_text()) == str(tmp_path / "mine")
