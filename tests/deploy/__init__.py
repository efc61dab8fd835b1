"""Deployment files: the Dockerfile (checked without a Docker engine), the k8s/ manifests, the
environments of deploy/overlays/ and the OCI DevOps specs of deploy/oci-devops/.

The Dockerfile is read by Docker's own parser (dockerfile_stages.py); `.dockerignore` by a
matcher with Docker's rules (dockerignore_rules.py). Every manifest under k8s/ is validated
offline by kubernetes-validate in strict mode (unknown fields are errors), then cross-checked
against the SFU's settings (settings_view.py): ports, probes, env names, drain timeout; pods.py
makes a pod's environment as the kubelet would and runs its init container's script. The
overlays are rendered by kustomize (kustomize.py) and checked the same way; the OCI DevOps specs
are checked against OCI's syntax and run with stubbed tools.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
