"""A stand-in for an app launch, for trying and testing `mlcache check --launch`: each run writes
what one launch of a Core ML app would leave in its container's specialization cache.

    python3 scripts/fake_app.py CONTAINER leak|noise|jump [COUNTER-FILE]

leak: a new 1 MB specialization every launch (the recompile leak); noise: one entry rewritten a
little bigger or smaller each launch; jump: 5 MB once, on the third launch, then nothing. The
counter file (default: beside the container, never inside it) numbers the launches.
"""

import os
import random
import sys

root, mode = sys.argv[1], sys.argv[2]
counter = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(os.path.abspath(root)),
                                                              f".fake-app-{mode}-launches")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
with open(counter, "w") as fh:
    fh.write(str(n))
cache = os.path.join(root, "Library/Caches/com.example.healthy/com.apple.e5rt.e5bundlecache/23A344")


def entry(name: str, size: int) -> None:
    path = os.path.join(cache, name, "x.bundle")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "main.e5"), "wb") as fh:
        fh.write(os.urandom(size))


if mode == "leak":
    entry(os.urandom(32).hex().upper(), 1_000_000)
elif mode == "noise":
    random.seed(n)
    entry("A" * 64, 300_000 + random.randint(-40_000, 40_000))
elif mode == "jump":
    if n == 3:
        entry(os.urandom(32).hex().upper(), 5_000_000)
elif mode == "fail" and n == 2:
    sys.exit(3)
elif mode == "hang":
    import time

    time.sleep(60)
