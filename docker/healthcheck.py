"""The image's HEALTHCHECK: healthy while the daemon answers /healthz and reaches its engine and
its state disk. A failing registry or git remote is reported by /healthz but is no fault of this
container, and restarting it would not mend either."""
import json
import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("BASEWATCH_HEALTHZ", "http://127.0.0.1:8080/healthz")
# Never through a proxy from the environment: the daemon is in this container.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(URL, timeout=4) as response:
        report = json.load(response)
except urllib.error.HTTPError as exc:
    # 503 while the config's tasks are being registered: not healthy yet (the start period
    # covers it), and said so rather than as a failure.
    try:
        progress = json.load(exc).get("registration", {})
    except ValueError:
        progress = {}
    if exc.code == 503 and progress:
        sys.exit(f"starting: {progress.get('registered')} of {progress.get('total')} config "
                 "tasks registered")
    sys.exit(f"no answer from {URL}: {exc}")
except (OSError, ValueError) as exc:
    sys.exit(f"no answer from {URL}: {exc}")
problems = [f"{part}: {report.get(part)}" for part in ("engine", "disk") if report.get(part) != "ok"]
if problems:
    sys.exit("; ".join(problems))
