"""The E2B Python SDK against sandpit's gateway (docs/install.md):

    pip install e2b
    export E2B_API_KEY=$(sandpit keys --kubeconfig ~/.kube/config create --namespace default)
    kubectl -n sandpit-system port-forward svc/sandpit-gateway 3000:3000 &
    export E2B_API_URL=http://127.0.0.1:3000 E2B_SANDBOX_URL=http://127.0.0.1:3000
    python3 examples/e2b/hello.py

With an Ingress and TLS (operator.gateway.domain), E2B_DOMAIN=<domain> alone
replaces the two URLs."""

import os
import sys

from e2b import Sandbox

for var in ("E2B_API_KEY",):
    if not os.environ.get(var):
        sys.exit(f"{var} is not set (docs/install.md)")
if not (os.environ.get("E2B_DOMAIN") or os.environ.get("E2B_API_URL")):
    sys.exit("set E2B_API_URL and E2B_SANDBOX_URL to the gateway, or E2B_DOMAIN (docs/install.md)")

sbx = Sandbox.create(timeout=120)
try:
    r = sbx.commands.run("python3 -c 'print(1+1)'")
    print(r.stdout.strip())  # 2
    sbx.files.write("/home/user/hello.txt", "hello from sandpit\n")
    print(sbx.files.read("/home/user/hello.txt").strip())
finally:
    sbx.kill()
