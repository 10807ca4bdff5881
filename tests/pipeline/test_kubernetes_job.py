"""``trimbert launch --emit kubernetes``: the manifest validates against the Kubernetes schemas (offline, with
kubernetes-validate), and each pod's wrapper builds the TF_CONFIG of its index (run here with a fake
``trimbert`` that prints what it was given). No cluster is involved."""

from __future__ import annotations

import copy
import json
import os
import subprocess

import kubernetes_validate
import pytest
import yaml

# podFailurePolicy is stable since 1.31; the newest schemas the package ships too.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
PRETRAIN = ["pretrain", "--config", "tiny", "--data", "gs://bucket/data", "--model-dir", "gs://bucket/run",
            "--set", "pretrain.phases=[{steps: 50, batch_size: 16}]", "--set", "pretrain.note='a \"quoted\" $HOME'"]


def _emit(capsys, *options: str, workers: int = 3, arguments=PRETRAIN) -> list[dict]:
    from pipeline.cli import main as cli

    code = cli.main(["launch", "--emit", "kubernetes", "--workers", str(workers), "--image", "registry/trimbert:1",
                     *options, "--", *arguments])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return list(yaml.safe_load_all(captured.out))


def _validate(document: dict) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_manifest_validates_and_runs_n_indexed_workers_behind_a_headless_service(capsys):
    service, job = _emit(capsys, "--name", "bert", "--namespace", "ml", "--max-restarts", "4")
    for document in (service, job):
        _validate(document)
        assert document["metadata"]["namespace"] == "ml"
    assert (service["kind"], job["kind"]) == ("Service", "Job")
    assert service["spec"]["clusterIP"] == "None"
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimit"] == 4
    assert pod["subdomain"] == service["metadata"]["name"] == "bert-workers"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()  # the Service selects the Job's pods
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    actions = {}
    for rule in spec["podFailurePolicy"]["rules"]:
        for code in rule.get("onExitCodes", {}).get("values", []):
            actions[code] = rule["action"]
    assert actions == {2: "FailJob", 75: "Ignore", 143: "Ignore"}
    container = pod["containers"][0]
    assert container["args"] == [*PRETRAIN, "--strategy", "multi_worker"]
    assert container["ports"][0]["containerPort"] == service["spec"]["ports"][0]["port"] == 2222


def test_each_pod_builds_the_tf_config_of_its_index(capsys, tmp_path):
    _, job = _emit(capsys, "--name", "bert", "--port-base", "5000", workers=3)
    container = job["spec"]["template"]["spec"]["containers"][0]
    fake = tmp_path / "trimbert"  # prints TF_CONFIG, then its arguments separated by NULs
    fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$TF_CONFIG"\nfor a in "$@"; do printf \'%s\\0\' "$a"; done\n')
    fake.chmod(0o755)
    addresses = [f"bert-{index}.bert-workers:5000" for index in range(3)]
    for index in range(3):
        env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "JOB_COMPLETION_INDEX": str(index)}
        done = subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        first_line, _, rest = done.stdout.partition("\n")
        assert json.loads(first_line) == {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        assert rest.split("\0")[:-1] == container["args"]  # passed on verbatim, quotes and $ included
    env = {key: value for key, value in os.environ.items() if key != "JOB_COMPLETION_INDEX"}
    done = subprocess.run(container["command"] + container["args"], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0 and "JOB_COMPLETION_INDEX" in done.stderr


@pytest.mark.parametrize("break_it", [
    lambda job: job["spec"].update(completions="3"),  # a string where an integer belongs
    lambda job: job["spec"]["template"]["spec"].update(subDomain="bert-workers"),  # an unknown field
    lambda job: job["spec"]["podFailurePolicy"]["rules"][0].update(action=None),
], ids=["wrong-type", "unknown-field", "null-action"])
def test_a_broken_manifest_fails_validation(capsys, break_it):
    _, job = _emit(capsys)
    broken = copy.deepcopy(job)
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)


@pytest.mark.parametrize("name", ["Bert", "9bert", "bert_run", "b" * 56])
def test_a_name_that_is_no_dns_label_is_refused_in_one_line(capsys, name):
    from pipeline.cli import main as cli

    code = cli.main(["launch", "--emit", "kubernetes", "--workers", "2", "--image", "i", "--name", name, "--",
                     "pretrain"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "need DNS labels" in captured.err
