"""Deployment files: the Dockerfile (checked without a Docker engine) and the k8s/ manifests.

The Dockerfile is read by Docker's own parser (dockerfile_stages.py); `.dockerignore` by a
matcher with Docker's rules (dockerignore_rules.py). Every manifest under k8s/ is validated
offline by kubernetes-validate in strict mode (unknown fields are errors), then cross-checked
against the SFU's settings (settings_view.py): ports, probes, env names, drain timeout.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
