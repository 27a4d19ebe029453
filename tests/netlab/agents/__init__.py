"""Small stdlib-only programs run inside the lab's namespaces (python3 path/to/x.py ...).

Each prints JSON on stdout; all are bounded in count and time. ``path(name)`` gives the file.
"""
from pathlib import Path


def path(name: str) -> str:
    """Filesystem path of an agent script, e.g. ``path("udp_recv")``."""
    p = Path(__file__).with_name(f"{name}.py")
    if not p.exists():
        raise FileNotFoundError(p)
    return str(p)
