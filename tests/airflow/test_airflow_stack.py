"""The real-scheduler harness works: LocalExecutor tasks run in their own processes, their logs are masked,
a bad conf is refused at trigger time, and stopping the stack leaves no process behind."""

from __future__ import annotations

import textwrap

import pytest

from tests.airflow_stack import AirflowStack, AirflowStackError

pytestmark = [pytest.mark.airflow, pytest.mark.scheduler]

SECRET = "s3cr3t-value"

PROOF_DAG = textwrap.dedent(
    f'''
    import os

    from airflow.sdk import Param, dag, task
    from airflow.sdk.log import mask_secret


    @dag(dag_id="stack_proof", schedule=None, catchup=False,
         params={{"greeting": Param("hello", type="string")}})
    def stack_proof():
        @task
        def record_pid(name):
            return {{"name": name, "pid": os.getpid()}}

        @task
        def leak_a_secret(**context):
            mask_secret("{SECRET}")
            print("the secret is {SECRET}")
            return context["params"]["greeting"]

        [record_pid.override(task_id=f"pid_{{i}}")(f"t{{i}}") for i in range(3)]
        leak_a_secret()


    stack_proof()
    '''
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    dags = tmp_path_factory.mktemp("dags")
    (dags / "stack_proof.py").write_text(PROOF_DAG)
    with AirflowStack(dags) as running:
        yield running
    assert not running.processes(), "processes outlived the stack"


def test_tasks_run_in_separate_processes_and_logs_are_masked(stack):
    result = stack.run_dag("stack_proof", conf={"greeting": "hi"}, timeout=120)
    print(f"stack timings {stack.timings}, run {result.seconds:.1f}s")

    assert result.state == "success", result.describe()
    assert result.task_states == {
        "pid_0": "success",
        "pid_1": "success",
        "pid_2": "success",
        "leak_a_secret": "success",
    }
    pids = {result.xcom[f"pid_{i}"]["return_value"]["pid"] for i in range(3)}
    assert len(pids) == 3, result.xcom
    assert result.xcom["leak_a_secret"]["return_value"] == "hi"
    assert "the secret is ***" in result.log_events("leak_a_secret")
    assert SECRET not in result.logs["leak_a_secret"]


def test_a_conf_that_breaks_the_param_schema_is_refused_at_trigger(stack):
    with pytest.raises(AirflowStackError, match="-> 400"):
        stack.trigger("stack_proof", conf={"greeting": 42})


SLEEPY_DAG = textwrap.dedent(
    """
    import time

    from airflow.sdk import dag, task


    @dag(dag_id="sleepy", schedule=None)
    def sleepy():
        @task
        def sleep():
            time.sleep(600)

        sleep()


    sleepy()
    """
)


def test_stop_ends_every_process_even_a_running_task_when_the_body_fails(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "sleepy.py").write_text(SLEEPY_DAG)
    stack = AirflowStack(dags, home=tmp_path / "home")
    with pytest.raises(ZeroDivisionError):
        with stack:
            run_id = stack.trigger("sleepy")
            stack._wait_until(
                lambda: stack.task_instances("sleepy", run_id)[0]["state"] == "running", 60, "the task to run"
            )
            assert len(stack.processes()) >= 5  # 3 components + executor workers + task supervisor and process
            1 / 0
    print(f"stack timings {stack.timings}")
    assert not stack.processes()
