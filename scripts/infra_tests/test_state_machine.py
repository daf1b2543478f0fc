"""The nightly state machine, as Terraform renders it (templatefile with the
keys orchestration.tf passes), executed by moto's Step Functions against
moto's Batch without Docker: the success path extracts and scores in shards
(users, then photos, then finish, all naming one run) and reaches publish and
gc; a failing score shard ends in the failure branch, notifies, and never
publishes; one shard runs plain jobs (Batch arrays need at least 2 children)."""

import json
import os
import time
import unittest
from contextlib import contextmanager
from datetime import datetime

import boto3
from moto import mock_aws
from moto.batch_simple.models import BatchSimpleBackend
from moto.core import DEFAULT_ACCOUNT_ID as ACCOUNT
from moto.sns.models import sns_backends
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)

from tf import local, reference, render

REGION = "us-east-1"
CONFIG = {"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False}}


def _operation(service, action):
    """botocore's model of `action` (`submitJob` or `describe_jobs`)."""
    pascal = "".join(p[:1].upper() + p[1:] for p in action.split("_"))
    model = boto3.session.Session().client(service, region_name=REGION).meta.service_model
    return model.operation_model(pascal)


def _normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
    service = self._get_boto_service_name(boto_service_name)
    action = service_action_name or self.resource.api_action
    self._to_boto_request(parameters, _operation(service, action).input_shape)


def _normalise_response(self, response, boto_service_name=None, service_action_name=None):
    service = self._get_boto_service_name(boto_service_name)
    action = service_action_name or self.resource.api_action
    self._from_boto_response(response, _operation(service, action).output_shape)


# moto 5.2 ported LocalStack's Step Functions interpreter but left the two hooks
# that map an optimised integration's PascalCase parameters (which AWS requires:
# "JobName", "ArrayProperties") to the service API's casing, and its answers
# back, as no-ops; so no Batch task could run. These restore that mapping from
# botocore's own service models, as LocalStack does; the interpreter, the Batch
# and SNS integrations and the fake Batch are moto's.
StateTaskService._normalise_parameters = _normalise_parameters
StateTaskService._normalise_response = _normalise_response


@contextmanager
def failing_jobs(name):
    """moto's Batch fails a job when MOTO_SIMPLE_BATCH_FAIL_AFTER is set at its
    submission: set it for the jobs called `name` only."""
    original = BatchSimpleBackend.submit_job

    def submit(self, job_name, *args, **kwargs):
        if job_name == name:
            os.environ["MOTO_SIMPLE_BATCH_FAIL_AFTER"] = "0"
        try:
            return original(self, job_name, *args, **kwargs)
        finally:
            os.environ.pop("MOTO_SIMPLE_BATCH_FAIL_AFTER", None)

    BatchSimpleBackend.submit_job = submit
    try:
        yield
    finally:
        BatchSimpleBackend.submit_job = original


class StateMachineTest(unittest.TestCase):
    def setUp(self):
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ["AWS_DEFAULT_REGION"] = REGION
        self.mock = mock_aws(config=CONFIG)
        self.mock.start()
        self.addCleanup(self.mock.stop)
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="test", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )["Role"]["Arn"]
        self.role = role
        batch = boto3.client("batch", region_name=REGION)
        ce = batch.create_compute_environment(
            computeEnvironmentName="faverecs-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
        )["computeEnvironmentArn"]
        queue = batch.create_job_queue(
            jobQueueName="jobs", state="ENABLED", priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}],
        )["jobQueueArn"]
        self.batch = batch
        self.queue = queue
        stages = local("batch.tf", "stages")
        self.job_defs = {
            name: batch.register_job_definition(
                jobDefinitionName=f"faverecs-{name}", type="container",
                containerProperties={"image": "faverecs", "vcpus": 1, "memory": 512,
                                     "command": stage["command"]},
            )["jobDefinitionArn"]
            for name, stage in stages.items()
        }
        self.topic = boto3.client("sns", region_name=REGION).create_topic(Name="alerts")["TopicArn"]
        self.sfn = boto3.client("stepfunctions", region_name=REGION)

    def definition(self, shards, score_shards):
        """The template rendered by Terraform with every key orchestration.tf
        passes, each bound to the moto resource its expression names."""
        values = {}
        for key, expression in local("orchestration.tf", "state_machine_vars").items():
            kind, name = reference(expression)
            values[key] = {
                "var": lambda: shards if name == "extract_shards" else score_shards,
                "aws_batch_job_queue": lambda: self.queue,
                "aws_batch_job_definition": lambda: self.job_defs[name],
                "aws_sns_topic": lambda: self.topic,
            }[kind]()
        text = render("nightly.asl.json.tftpl", values)
        json.loads(text)
        return text

    def execute(self, shards, score_shards=None):
        score_shards = shards if score_shards is None else score_shards
        arn = self.sfn.create_state_machine(
            name=f"nightly-{shards}-{time.time_ns()}",
            definition=self.definition(shards, score_shards),
            roleArn=self.role,
        )["stateMachineArn"]
        run = self.sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        deadline = time.time() + 60
        while True:
            status = self.sfn.describe_execution(executionArn=run)["status"]
            if status != "RUNNING":
                break
            self.assertLess(time.time(), deadline, "the execution did not finish")
            time.sleep(0.2)
        events = self.sfn.get_execution_history(executionArn=run, maxResults=1000)["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
        self.started = self.sfn.describe_execution(executionArn=run)["startDate"]
        return status, entered

    def environments(self, prefix):
        """job name -> its environment, for every submitted job (arrays, not
        their children) whose name starts with `prefix`."""
        out = {}
        for status in ("SUCCEEDED", "FAILED"):
            for summary in self.batch.list_jobs(jobQueue=self.queue, jobStatus=status)["jobSummaryList"]:
                job = self.batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0]
                if ":" not in job["jobId"] and job["jobName"].startswith(prefix):
                    out[job["jobName"]] = {e["name"]: e["value"] for e in job["container"].get("environment", [])}
        return out

    def jobs(self):
        """(name, array size or None, status) of every job submitted."""
        out = []
        for status in ("SUCCEEDED", "FAILED"):
            for summary in self.batch.list_jobs(jobQueue=self.queue, jobStatus=status)["jobSummaryList"]:
                job = self.batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0]
                if ":" in job["jobId"]:
                    continue  # an array child
                out.append((job["jobName"], job.get("arrayProperties", {}).get("size"), status))
        return sorted(out)

    def test_the_success_path_extracts_and_scores_in_shards_and_reaches_publish_and_gc(self):
        status, entered = self.execute(shards=4, score_shards=3)
        self.assertEqual(status, "SUCCEEDED", entered)
        self.assertEqual(
            [s for s in entered if s != "Shards" and not s.endswith("FanOut")],
            ["ExtractTrackedArray", "ExtractNeighborsArray", "Fold", "ScoreUsersArray",
             "ScorePhotosArray", "ScoreFinish", "Publish", "Gc", "Done"],
        )
        # Each array child learns the array's size from the environment.
        for summary in self.batch.list_jobs(jobQueue=self.queue, jobStatus="SUCCEEDED")["jobSummaryList"]:
            job = self.batch.describe_jobs(jobs=[summary["jobId"]])["jobs"][0]
            if job["jobName"].startswith("extract"):
                env = {e["name"]: e["value"] for e in job["container"]["environment"]}
                self.assertEqual(env.get("AWS_BATCH_JOB_ARRAY_SIZE"), "4", job["jobName"])
        # Every score job names the same run: the execution's start time.
        score = self.environments("score")
        self.assertEqual(set(score), {"score-users", "score-photos", "score-finish"})
        run_ids = {env.get("FAVERECS_RUN_ID") for env in score.values()}
        self.assertEqual(len(run_ids), 1, score)
        # moto hands the context value over JSON-quoted; AWS hands the bare
        # RFC 3339 string, which is what `faverecs score --run-id` accepts.
        run_id = run_ids.pop().strip('"')
        started = datetime.fromisoformat(run_id.replace("Z", "+00:00"))
        self.assertLess(abs((started - self.started).total_seconds()), 1, (run_id, self.started))
        self.assertEqual(score["score-users"].get("AWS_BATCH_JOB_ARRAY_SIZE"), "3")
        self.assertEqual(score["score-photos"].get("AWS_BATCH_JOB_ARRAY_SIZE"), "3")
        self.assertEqual(
            self.jobs(),
            sorted([("extract-tracked", 4, "SUCCEEDED"), ("extract-neighbors", 4, "SUCCEEDED"),
                    ("fold", None, "SUCCEEDED"), ("score-users", 3, "SUCCEEDED"),
                    ("score-photos", 3, "SUCCEEDED"), ("score-finish", None, "SUCCEEDED"),
                    ("publish", None, "SUCCEEDED"), ("gc", None, "SUCCEEDED")]),
        )

    def test_one_shard_runs_plain_jobs(self):
        status, entered = self.execute(shards=1)
        self.assertEqual(status, "SUCCEEDED", entered)
        self.assertIn("ExtractTracked", entered)
        self.assertNotIn("ExtractTrackedArray", entered)
        self.assertTrue(all(size is None for _, size, _ in self.jobs()), self.jobs())

    def test_a_failing_score_shard_ends_in_the_failure_branch_and_never_publishes(self):
        with failing_jobs("score-photos"):
            status, entered = self.execute(shards=2)
        self.assertEqual(status, "FAILED", entered)
        self.assertEqual(entered[-2:], ["NotifyFailure", "Failed"])
        self.assertIn("ScorePhotosArray", entered)
        self.assertNotIn("ScoreFinish", entered)
        self.assertNotIn("Publish", entered)
        self.assertNotIn("Gc", entered)
        names = [name for name, _, _ in self.jobs()]
        self.assertNotIn("publish", names)
        self.assertNotIn("score-finish", names)
        self.assertIn(("score-photos", 2, "FAILED"), self.jobs())
        # The alarms topic was told, once, with the failed task's error.
        sent = sns_backends[ACCOUNT][REGION].topics[self.topic].sent_notifications
        self.assertEqual(len(sent), 1, sent)
        message, subject = sent[0][1], sent[0][2]
        self.assertEqual(subject, "faverecs nightly failed")
        self.assertIn("States.TaskFailed", message)
        self.assertIn("Nothing was published", message)


if __name__ == "__main__":
    unittest.main()
