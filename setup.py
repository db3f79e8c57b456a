"""The optional compiled build: `LMWATCH_MYPYC=1 pip install .` compiles the request path with mypyc.

Everything else is in pyproject.toml. `COMPILED` are the modules every proxied `/v1` request runs
through; compiled, a request costs about a fifth less CPU (bench/RESULTS.md). They are plain typed
Python, so without the variable the same source is the pure-Python build, which behaves the same.
Left out: modules with functions aiohttp marks (`@web.middleware`, as in api/openai.py and
api/auth.py), modules whose parts tests replace, and http_client.py (its `ConnectTimeout` is also a
`TimeoutError`, two built-in bases a compiled class cannot have).
"""

import os
import shutil
import sys
import sysconfig

from setuptools import setup

COMPILED = [
    "lmwatch/api/admission.py",
    "lmwatch/api/attempts.py",
    "lmwatch/api/calls.py",
    "lmwatch/api/core.py",
    "lmwatch/api/exchange.py",
    "lmwatch/api/feedback.py",
    "lmwatch/api/judging.py",
    "lmwatch/api/json_call.py",
    "lmwatch/api/lean.py",
    "lmwatch/api/request_ids.py",
    "lmwatch/api/rewrite.py",
    "lmwatch/api/upstream.py",
    "lmwatch/metrics/requests.py",
    "lmwatch/metrics/tally.py",
    "lmwatch/routing/balance.py",
    "lmwatch/routing/decide.py",
    "lmwatch/routing/request.py",
    "lmwatch/routing/select.py",
]
"""The request path's modules mypyc compiles (build_backend.py installs mypy for it)."""


def missing_tools() -> list[str]:
    """What the compiled build needs and this machine lacks: a C compiler, Python's headers."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    missing = []
    if shutil.which(compiler) is None:
        missing.append(f"a C compiler ({compiler})")
    if not os.path.isfile(headers):
        missing.append(f"Python's headers ({headers})")
    return missing


if os.environ.get("LMWATCH_MYPYC") != "1":
    setup()
elif "editable_wheel" in sys.argv:  # the modules would be built in place and shadow their edited source
    sys.exit("LMWATCH_MYPYC=1 is for a regular install; an editable one (pip install -e) is pure Python")
elif missing := missing_tools():
    sys.exit(
        f"LMWATCH_MYPYC=1 (the compiled build) needs {' and '.join(missing)}: on Debian and Ubuntu,"
        " apt install build-essential python3-dev; or install without LMWATCH_MYPYC for the pure-Python build"
    )
else:
    from mypyc.build import mypycify

    # a build directory of its own: a later pure-Python build never picks up the compiled modules
    BUILD = "build/mypyc"
    setup(ext_modules=mypycify(COMPILED, opt_level="3", target_dir=BUILD), options={"build": {"build_base": BUILD}})
