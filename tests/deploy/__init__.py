"""Deployment files: the Dockerfile (checked without a Docker engine) and the k8s/ manifests.

The Dockerfile is read by a small parser below (instructions, flags, JSON arguments, line
continuations); `.dockerignore` by a matcher with Docker's rules. Every manifest under k8s/ is
validated offline by kubernetes-validate in strict mode (unknown fields are errors), then
cross-checked against `sfu.settings.Settings`: ports, probes, env names, drain timeout.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
