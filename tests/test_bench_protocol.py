"""The quiet-machine protocol of benchmarks/reference_net.py, without
measuring anything: a fake machine (load average, /proc/stat counters, clock)
drives the gate, a fake child process the runner, and synthetic records the
report."""

from __future__ import annotations

import json
import subprocess
import types

import pytest

from benchmarks import reference_net
from benchmarks.refnet import quiet, report


class FakeMachine:
  """Two cores; ``others(t)`` cores kept busy by other processes and
  ``load(t)`` the 1-minute load at time t (seconds)."""

  def __init__(self, others=lambda t: 0.0, load=lambda t: 0.1, cores=2):
    self.t, self.busy, self.total = 0.0, 0.0, 0.0
    self.others, self.load, self.cores = others, load, cores
    self.said = []

  def sleep(self, dt, own_cores=0.0):
    # integrate in 1 s steps so a change of ``others`` mid-sleep counts
    end = self.t + dt
    while self.t < end:
      step = min(1.0, end - self.t)
      self.busy += (min(self.others(self.t) + own_cores, self.cores)) * step
      self.total += self.cores * step
      self.t += step

  def gate(self, **kw):
    kw = {**dict(max_load=0.5, max_busy=0.2, wait_s=120.0, poll_s=10.0,
                 sample_s=3.0, cores=self.cores), **kw}
    return quiet.Gate(read_loadavg=lambda: (self.load(self.t), 1.0, 1.0),
                      read_cpu=lambda: (self.busy, self.total),
                      sleep=self.sleep, clock=lambda: self.t,
                      say=self.said.append, **kw)


def test_quiet_machine_starts_at_once_and_records_the_loads():
  m = FakeMachine(others=lambda t: 0.02, load=lambda t: 0.1 + 0.03 * t)
  gate = m.gate()
  rec = gate.before()
  assert rec["waited_s"] == 0 and not rec["loaded"]
  assert rec["load_before"][0] == pytest.approx(0.1)
  assert rec["others_before"] == pytest.approx(0.02)
  m.sleep(30, own_cores=2.0)  # the measured process: both cores, 30 s
  rec = gate.after(rec, child_cpu_s=58.8)
  assert rec["load_after"][0] == pytest.approx(0.1 + 0.03 * 33)
  # machine busy 60 core-s (capped at 2 cores) less the child's 58.8
  assert rec["others_during"] == pytest.approx(1.2 / 30, abs=1e-3)
  assert not rec["loaded"] and "_cpu0" not in rec
  assert not m.said


def test_waits_until_the_load_drops():
  m = FakeMachine(others=lambda t: 1.5 if t < 45 else 0.0,
                  load=lambda t: 2.0 if t < 45 else 0.3)
  rec = m.gate().before()
  assert not rec["loaded"]
  assert 40 <= rec["waited_s"] <= 60
  assert rec["load_before"][0] == 0.3
  assert len(m.said) == 1 and m.said[0].startswith(
      "  waiting for a quiet machine")
  assert "1-minute load 2.00 > 0.5" in m.said[0]
  assert "busy on 1.50 of 2 cores" in m.said[0]


def test_refuses_with_one_line_naming_the_load():
  m = FakeMachine(others=lambda t: 1.7, load=lambda t: 2.11)
  gate = m.gate(wait_s=60.0)
  with pytest.raises(quiet.LoadRefused) as e:
    gate.before()
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith("refused:")
  assert "1-minute load 2.11" in msg and "1.70 of 2 cores" in msg
  assert "--allow-load" in msg
  assert 60 <= m.t < 80  # waited the minute, then gave up


def test_allow_load_measures_and_marks_the_record_loaded():
  m = FakeMachine(others=lambda t: 1.0, load=lambda t: 1.5)
  gate = m.gate(wait_s=20.0, allow_load=True)
  rec = gate.before()
  assert rec["loaded"] and rec["waited_s"] >= 20
  assert any("--allow-load" in s for s in m.said)
  m.sleep(10, own_cores=1.0)
  assert gate.after(rec, child_cpu_s=10.0)["loaded"]


def test_no_wait_refuses_at_once():
  m = FakeMachine(others=lambda t: 0.0, load=lambda t: 3.0)
  with pytest.raises(quiet.LoadRefused):
    m.gate(wait_s=0.0).before()
  assert m.t == pytest.approx(3.0)  # one busy sample, no polling


def test_later_processes_are_gated_on_busy_cores_not_our_own_load():
  # our previous process left the 1-minute load at 1.2: nobody else runs
  m = FakeMachine(others=lambda t: 0.0, load=lambda t: 1.2)
  gate = m.gate(wait_s=30.0)
  with pytest.raises(quiet.LoadRefused):
    gate.before()  # before the first process the load itself counts
  gate.started = True
  rec = gate.before()
  assert rec["waited_s"] == 0 and not rec["loaded"]


def test_a_neighbour_starting_mid_process_marks_it_loaded():
  m = FakeMachine(others=lambda t: 0.0 if t < 10 else 1.0)
  gate = m.gate()
  rec = gate.before()
  m.sleep(20, own_cores=1.0)
  rec = gate.after(rec, child_cpu_s=20.0)
  assert rec["others_during"] > 0.2 and rec["loaded"]


def test_readers_parse_proc_files(tmp_path):
  load = tmp_path / "loadavg"
  load.write_text("2.11 1.93 2.45 9/154 1810\n")
  assert quiet.read_loadavg(str(load)) == (2.11, 1.93, 2.45)
  stat = tmp_path / "stat"
  stat.write_text("cpu  100 10 50 800 20 5 5 10 0 0\ncpu0 1 2 3 4\n")
  tick = quiet.os.sysconf("SC_CLK_TCK")
  busy, total = quiet.read_cpu_times(str(stat))
  assert busy == pytest.approx(180 / tick)
  assert total == pytest.approx(1000 / tick)


def test_summary_sentence():
  recs = [dict(load_before=[0.1, 0, 0], load_after=[0.9, 0, 0],
               others_during=0.05, loaded=False),
          dict(load_before=[0.3, 0, 0], load_after=[1.1, 0, 0],
               others_during=0.12, loaded=True)]
  s = quiet.summary(recs)
  assert "2 measured processes" in s and "0.10-0.30 before" in s
  assert "0.90-1.10 after" in s and "at most 0.12 cores" in s
  assert "1 marked loaded" in s


# --- the runner ---------------------------------------------------------


def test_headline_processes_get_no_tuning_variables(monkeypatch):
  for k, v in (("XLA_FLAGS", "--foo"), ("GLIBC_TUNABLES", "x"),
               ("OMP_WAIT_POLICY", "PASSIVE"), ("MKL_NUM_THREADS", "2"),
               ("SCNN_JAX_HOST_ALLOCATOR", "0"), ("HOME_KEPT", "1")):
    monkeypatch.setenv(k, v)
  args = types.SimpleNamespace(omp_wait_policy="default",
                               default_malloc=False)
  env, labels = reference_net.job_env("pytorch", "", args)
  assert labels == []
  assert env["HOME_KEPT"] == "1"
  for k in ("XLA_FLAGS", "GLIBC_TUNABLES", "OMP_WAIT_POLICY",
            "MKL_NUM_THREADS", "SCNN_JAX_HOST_ALLOCATOR"):
    assert k not in env
  env, labels = reference_net.job_env("pytorch", "passive", args)
  assert env["OMP_WAIT_POLICY"] == "PASSIVE"
  assert labels == ["OMP_WAIT_POLICY=PASSIVE"]
  env, labels = reference_net.job_env("scnn_jax", "default-malloc", args)
  assert env["SCNN_JAX_HOST_ALLOCATOR"] == "0"


def test_headline_preset_rows():
  args = types.SimpleNamespace(gpu=False, spyx_max_T=8, bf16=False,
                               **{k: v for k, v in
                                  reference_net.HEADLINE.items()
                                  if k in ("T", "impls", "rows")})
  jobs = reference_net.main_jobs(args)
  user = [j for j in jobs if j[4] == "user"]
  assert [j[1] for j in user] == [8, 16]
  assert user[0][2] == ["--same-flops", "--jit", "plain", "--small-convs",
                        "xla"] and user[0][3] == ""  # no settings
  hand = [j for j in jobs if j[4] == "pytorch"]
  assert hand and all(j[2] == [] and j[3] == "" for j in hand)
  assert {j[4] for j in jobs} >= {"unroll", "passive", "torch-malloc",
                                  "user-malloc", "norse", "scnn_jax"}
  assert [j[1] for j in jobs] == sorted(j[1] for j in jobs)


def _fake_child(machine, steps_per_s):
  def run(cmd, **kw):
    machine.sleep(10)
    impl = cmd[2].rsplit(".", 1)[1]
    rec = dict(impl=impl, variant="v", T=int(cmd[cmd.index("--T") + 1]),
               steps_per_s=steps_per_s[impl], step_s=1 / steps_per_s[impl],
               cpu_avail=0.98, infer_img_s=100.0, gflops=1.0, pct_peak=1.0,
               compile_s=1.0, exec_pct_peak=1.0, peak_rss_mb=500.0,
               dev_peak_mb=None, loss_first=0.04, loss_last=0.03,
               steps_timed=9, rates=[0.3, 0.2, 0.2, 0.1])
    return subprocess.CompletedProcess(cmd, 0, "RESULT " + json.dumps(rec),
                                       "")
  return run


def test_runner_records_the_gate_per_process(monkeypatch, tmp_path):
  m = FakeMachine(others=lambda t: 0.0, load=lambda t: 0.2)
  gate = m.gate()
  monkeypatch.setattr(reference_net.subprocess, "run",
                      _fake_child(m, {"scnn": 2.0, "torch_loop": 1.0}))
  args = types.SimpleNamespace(
      peer_python="python", steps=5, steps_long=5, budget=1.0, gpu=False,
      spyx_steps=2, omp_wait_policy="default", default_malloc=False,
      rounds=3, machine="test machine")
  with open(tmp_path / "log", "w") as log:
    res = reference_net.run_jobs(
        [("pytorch", 8, [], "", "pytorch"), ("scnn_jax", 8, [], "", "user")],
        args, log, gate=gate)
  assert set(res) == {("pytorch", "v", 8), ("scnn_jax", "v", 8)}
  user = res[("scnn_jax", "v", 8)]
  assert user["runs"] == 3 and user["row"] == "user"
  assert sorted(p["round"] for p in user["per_round"]) == [0, 1, 2]
  for p in user["per_round"]:
    assert p["load_before"][0] == 0.2 and p["load_after"][0] == 0.2
    assert p["others_during"] == 0.0 and p["loaded"] is False
  assert "gate" in (tmp_path / "log").read_text()
  ratio, per = report.ratio(user, res[("pytorch", "v", 8)])
  assert ratio == 2.0 and per == [2.0, 2.0, 2.0]


def test_refusal_exits_with_one_line_and_keeps_the_results(monkeypatch,
                                                            tmp_path, capsys):
  out = tmp_path / "results.json"

  def refuse(args, res, log, gate):
    res[("pytorch", "v", 8)] = {"impl": "pytorch", "variant": "v", "T": 8}
    raise quiet.LoadRefused("refused: 1-minute load 2.11 ...")

  monkeypatch.setattr(reference_net, "measure", refuse)
  monkeypatch.setattr(reference_net, "versions", lambda args: "")
  monkeypatch.setattr(reference_net.sys, "argv", [
      "reference_net.py", "--headline", "--results-out", str(out),
      "--log", str(tmp_path / "log"), "--peer-python", "python"])
  with pytest.raises(SystemExit) as e:
    reference_net.main()
  assert str(e.value) == "reference_net.py: refused: 1-minute load 2.11 ..."
  assert json.loads(out.read_text()) == [
      {"impl": "pytorch", "variant": "v", "T": 8}]


# --- the report ---------------------------------------------------------


def _rec(row, impl, T, per_round, **kw):
  sps = sorted(per_round)[len(per_round) // 2]
  rounds = [dict(round=i, steps_per_s=s, load_before=[0.1, 0, 0],
                 load_after=[0.9, 0, 0], others_during=0.01,
                 loaded=kw.get("loaded", False))
            for i, s in enumerate(per_round)]
  return dict(row=row, impl=impl, variant=row, T=T, steps_per_s=sps,
              cpu_avail=0.97, per_round=rounds, infer_img_s=50.0,
              peak_rss_mb=600.0, compile_s=5.0, loss_first=0.04,
              loss_last=0.03, steps_timed=9, rates=[0.3, 0.2, 0.2, 0.1],
              runs=len(per_round), loaded=kw.get("loaded", False))


def _main(user8=(2.4, 2.5, 2.6), user16=(1.2, 1.1, 1.3), loaded=False):
  return [_rec("pytorch", "pytorch", 8, [2.0, 2.0, 2.0]),
          _rec("user", "scnn_jax", 8, list(user8), loaded=loaded),
          _rec("unroll", "scnn_jax", 8, [2.6, 2.6, 2.6]),
          _rec("pytorch", "pytorch", 16, [1.0, 1.0, 1.0]),
          _rec("user", "scnn_jax", 16, list(user16)),
          _rec("norse", "norse", 16, [0.9, 0.9, 0.9])]


def test_headline_tables_have_at_most_eight_columns():
  for table in (report.headline_table(_main(), [8, 16]),
                report.details_table(_main(), [8, 16])):
    header = table.splitlines()[0]
    assert header.count("|") - 1 <= 8
  table = report.headline_table(_main(), [8, 16])
  assert "| **scnn_jax, your own `jax.jit` step** | 8 | 2.50 | 1.25 | " \
         "1.20 / 1.25 / 1.30 |" in table
  assert "0.10 -> 0.90" in table


def test_goal_verdicts():
  met = "\n".join(report.goal_lines(_main(), [8, 16]))
  assert "T = 8: **1.25x**, T = 16: **1.20x**: **met**." in met
  assert "fully unrolled" in met and "T = 8: 1.04x" in met
  assert "T = 16: 1.33x norse" in met
  missed = "\n".join(report.goal_lines(_main(user16=(1.0, 1.05, 1.0)),
                                       [8, 16]))
  assert "**NOT met**" in missed and "Where the time goes" in missed
  loaded = "\n".join(report.goal_lines(_main(loaded=True), [8, 16]))
  assert "not decided: 3 of the processes were loaded" in loaded


def test_report_writes_the_file_and_the_study_block(tmp_path):
  study = tmp_path / "study.md"
  study.write_text("# Study\n\n<!-- headline -->\nold\n<!-- /headline -->\n"
                   "after\n")
  out = tmp_path / "BENCHMARKS.md"
  args = types.SimpleNamespace(max_load=0.5, max_busy=0.2, load_wait=10.0)
  report.write(str(out), main=_main(), remat="", extras="", layer="",
               machine="Test CPU, 2 cores", versions="v", argv="--headline",
               args=args, date="2026-01-01", study=str(study))
  text = out.read_text()
  assert text.index("## Headline") < text.index("## How it was measured")
  assert "18 measured processes" in text.split("## Headline")[0]
  s = study.read_text()
  assert "old" not in s and "**met**" in s and s.endswith(
      "<!-- /headline -->\nafter\n")
