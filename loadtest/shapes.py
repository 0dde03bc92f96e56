"""Load shapes for the Locust readers (loadtest/locustfile.py binds the one NEWSREC_SHAPE names): steady; a stepped
ramp to the breaking point, which measures the capacity C; a breaking-news surge with a burst of new articles.

Parameters come from constructor arguments (library use, e.g. a bench runner) or NEWSREC_SHAPE_* environment
variables (the `locust` command, which constructs shapes without arguments). Offered load ~= users x
NEWSREC_LOCUST_USER_RPS tasks/s, each task 1-2 requests. Figures per phase go to the log and NEWSREC_SHAPE_OUT."""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import numpy as np
from locust import LoadTestShape
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment

from data.synth_text import make_article
from data.vocab import subcategory_list
from loadtest.generator_health import GeneratorHealth
from loadtest.stats_window import ARTICLES, PREFETCH_SHED, RECOMMEND, RECOMMEND_PREFETCH, RECOMMEND_SHED, PhaseWindow

log = logging.getLogger("newsrec.loadtest")
SurgeHook = Callable[[Environment], None]
OFFERED = (RECOMMEND, RECOMMEND_PREFETCH, RECOMMEND_SHED, PREFETCH_SHED)  # what a reader asks for, shed or not
SURGE_HOOKS: list[SurgeHook] = []  # extra callbacks run (each in its own greenlet) when a surge starts


def _env(name: str, default: float) -> float:
    return float(os.environ.get(f"NEWSREC_SHAPE_{name}", default))


def _pick(value: float | None, name: str, default: float) -> float:
    return _env(name, default) if value is None else value


class RecordedShape(LoadTestShape):
    """A shape that measures each of its phases with a PhaseWindow and writes them out when it ends."""

    abstract = True

    def __init__(self, out: Path | None = None) -> None:
        super().__init__()
        self.out = out if out is not None else (Path(os.environ["NEWSREC_SHAPE_OUT"])
                                                if os.environ.get("NEWSREC_SHAPE_OUT") else None)
        self.phases: list[dict] = []
        self._window: PhaseWindow | None = None
        self._phase: str | None = None
        self.health = GeneratorHealth()  # the generator's own lateness, recorded with each phase
        self.done = False

    def _enter(self, phase: str, **extra: float) -> bool:
        """Close the current phase (recording it) and open `phase`; True when the phase changed."""
        if phase == self._phase:
            return False
        if self._window is None:
            self._window = PhaseWindow(self.runner.stats, clock=self.get_run_time)
            self.health.start()
        if self._phase is not None:
            self.phases.append(self._window.end(**extra, **self.health.take()))
            log.info("phase %s", json.dumps(self.phases[-1]))
        else:
            self.health.take()  # the first phase's figures start now
        self._phase = phase
        self._window.begin(phase)
        return True

    def summary(self) -> dict:
        """The shape's headline figures (besides its phases)."""
        return {}

    def phase_extra(self) -> dict:
        """Figures to record with the phase now open (e.g. its user count)."""
        return {}

    def stop(self) -> None:
        """Write out what was measured so far (the run was stopped from outside: Ctrl-C, the web UI, -t)."""
        if not self.done:
            self._finish(self.summary())

    def _finish(self, summary: dict) -> None:
        if self.done:
            return
        self.done = True
        if self._window is not None and self._phase is not None:
            last = self._window.end(**self.phase_extra(), **self.health.take())
            if last["seconds"] >= 1.0:  # a step that only just opened says nothing
                self.phases.append(last)
            self._phase = None
        self.health.stop()
        report = {"shape": type(self).__name__, **summary, "phases": self.phases}
        log.info("load shape result %s", json.dumps({k: v for k, v in report.items() if k != "phases"}))
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(json.dumps(report, indent=1))


class Steady(RecordedShape):
    """`users` readers for `duration_s`."""

    def __init__(self, users: int | None = None, duration_s: float | None = None, out: Path | None = None) -> None:
        super().__init__(out)
        self.users, self.duration_s = int(_pick(users, "USERS", 20)), _pick(duration_s, "DURATION_S", 60)

    def summary(self) -> dict:
        return {"users": self.users}

    def tick(self):
        if self.get_run_time() >= self.duration_s:
            self._finish(self.summary())
            return None
        self._enter("steady")
        return self.users, max(self.users, 1)


class Ramp(RecordedShape):
    """Add `step_users` readers every `step_s` until `patience` steps in a row break the SLO (admitted p99 >
    `slo_p99_ms`, shed share > `max_shed_share`, or any failure; in a row, so one noisy step on a shared machine
    does not end it) or `max_users` is passed. C = the best goodput of a step within the SLO."""

    def __init__(self, start_users: int | None = None, step_users: int | None = None, step_s: float | None = None,
                 max_users: int | None = None, slo_p99_ms: float | None = None, max_shed_share: float | None = None,
                 patience: int | None = None, out: Path | None = None) -> None:
        super().__init__(out)
        self.start_users = int(_pick(start_users, "START_USERS", 10))
        self.step_users = int(_pick(step_users, "STEP_USERS", 10))
        self.step_s = _pick(step_s, "STEP_S", 10)
        self.max_users = int(_pick(max_users, "MAX_USERS", 1_000))
        self.slo_p99_ms, self.max_shed_share = _pick(slo_p99_ms, "SLO_P99_MS", 100), _pick(max_shed_share,
                                                                                          "MAX_SHED_SHARE", 0.01)
        self.patience = int(_pick(patience, "PATIENCE", 2))
        self.capacity_rps, self.break_users, self._bad, self._users = 0.0, None, [], self.start_users

    def summary(self) -> dict:
        return {"capacity_rps": self.capacity_rps, "break_users": self.break_users, "slo_p99_ms": self.slo_p99_ms,
                "max_shed_share": self.max_shed_share}

    def phase_extra(self) -> dict:
        return {"users": self._users}

    def within_slo(self, step: dict) -> bool:
        p99 = step["recommend_p99_ms"]
        return (p99 is not None and p99 <= self.slo_p99_ms and step["shed_share"] <= self.max_shed_share
                and step["failures"] == 0)

    def tick(self):
        i = int(self.get_run_time() // self.step_s)
        users = self.start_users + i * self.step_users
        previous, self._users = self._users, users
        if self._enter(f"step {i}", users=previous) and self.phases:
            last = self.phases[-1]
            if self.within_slo(last):
                self.capacity_rps, self._bad = max(self.capacity_rps, last["goodput_rps"]), []
            elif i > 1:  # step 0 includes start-up; judge from the second step on
                self._bad.append(last["users"])
                if len(self._bad) >= self.patience:
                    self.break_users = self._bad[0]
                    self._finish(self.summary())
                    return None
        if users > self.max_users:
            self._finish(self.summary())
            return None
        return users, max(self.step_users, self.start_users)


class Surge(RecordedShape):
    """Breaking news: `base_users` for `warm_s`, up `factor`x over `rise_s` (with `articles` new articles published
    at its start), held for `hold_s`, back down over `decay_s`, then `tail_s` at base.

    With `target_rps` > 0 the curve is of offered load instead of readers: the readers are steered each second so
    that recommend requests sent (admitted or shed) follow target_rps x the curve. Under shedding a reader's
    requests per second change (a shed feed is asked for again, Retry-After pauses it), so a fixed reader count
    would offer anything from 3x to 8x of the intended peak."""

    STEER = (0.67, 1.6)   # per-tick bounds on the readers' multiplier: fast enough for a 10x rise in 5 s
    SMOOTH = 0.5          # weight of the newest per-reader rate in its running estimate

    def __init__(self, base_users: int | None = None, factor: float | None = None, warm_s: float | None = None,
                 rise_s: float | None = None, hold_s: float | None = None, decay_s: float | None = None,
                 tail_s: float | None = None, articles: int | None = None, target_rps: float | None = None,
                 max_users: int | None = None, start_s: float | None = None, out: Path | None = None) -> None:
        super().__init__(out)
        self.base_users, self.factor = int(_pick(base_users, "USERS", 20)), _pick(factor, "FACTOR", 10)
        # start: the generator spawning its readers and opening their connections (timed by Locust into the first
        # answers); at base load like warm, reported as its own phase so the surge's figures start after it
        start = _pick(start_s, "START_S", 0)
        self.spans = [*([("start", start)] if start > 0 else []),
                      ("warm", _pick(warm_s, "WARM_S", 30)), ("rise", _pick(rise_s, "RISE_S", 30)),
                      ("hold", _pick(hold_s, "HOLD_S", 60)), ("decay", _pick(decay_s, "DECAY_S", 60)),
                      ("tail", _pick(tail_s, "TAIL_S", 30))]
        self.articles = int(_pick(articles, "ARTICLES", 20))
        self.target_rps = _pick(target_rps, "TARGET_RPS", 0.0)
        self.max_users = int(_pick(max_users, "MAX_USERS", 5_000))
        self.users, self.peak_users = self.base_users, self.base_users
        self._users_at: dict[int, int] = {}       # second -> readers then (steer's per-reader rate needs them)
        self._per_reader: float | None = None    # recommend requests per reader per second, smoothed

    def summary(self) -> dict:
        return {"base_users": self.base_users, "factor": self.factor, "articles": self.articles,
                "target_rps": self.target_rps, "peak_users": self.peak_users}

    def curve_at(self, t: float) -> tuple[str, float] | None:
        """(phase, multiple of the base load) at `t` seconds into the run, None once it is over."""
        for phase, span in self.spans:
            if t < span:
                share = t / span if span else 1.0
                rise = 1 + (self.factor - 1) * share
                return phase, {"rise": rise, "hold": self.factor, "decay": self.factor + 1 - rise}.get(phase, 1.0)
            t -= span
        return None

    def users_at(self, t: float) -> tuple[str, int] | None:
        """(phase, readers) at `t` on the plain readers' curve."""
        now = self.curve_at(t)
        return None if now is None else (now[0], max(1, round(self.base_users * now[1])))

    def offered_rps(self, now_s: float, seconds: int = 2) -> float:
        """Recommend requests sent per second (admitted, shed or failed) over the last complete `seconds`."""
        end = int(now_s)
        counts = [e.num_reqs_per_sec for (name, _), e in self.runner.stats.entries.items() if name in OFFERED]
        return sum(c.get(t, 0) for c in counts for t in range(end - seconds, end)) / seconds

    def steer(self, multiple: float, now_s: float) -> int:
        """Readers for the next second: target / (recommend requests per reader per second), the latter measured
        over the last 2 s against the readers of those same seconds and smoothed, within STEER of this second's.

        A feed-forward estimate, not an integrator: scaling this second's readers by target / offered (offered
        measured over seconds that had other reader counts) overshot and swung the readers 3x either way every
        few seconds (bench load: 174 -> 591 -> 174 readers in the hold, 500 to 2,600 requests/s offered)."""
        self._users_at[int(now_s)] = self.users
        offered = self.offered_rps(now_s)
        then = [self._users_at[t] for t in range(int(now_s) - 2, int(now_s)) if t in self._users_at]
        if offered > 0 and then:
            per_reader = offered / (sum(then) / len(then))
            self._per_reader = per_reader if self._per_reader is None else \
                (1 - self.SMOOTH) * self._per_reader + self.SMOOTH * per_reader
            lo, hi = self.STEER
            want = self.target_rps * multiple / self._per_reader
            self.users = round(min(max(want, self.users * lo), self.users * hi))
        self.users = min(max(self.users, 1), self.max_users)
        self.peak_users = max(self.peak_users, self.users)
        return self.users

    def tick(self):
        t = self.get_run_time()
        now = self.curve_at(t)
        if now is None:
            self._finish(self.summary())
            return None
        phase, multiple = now
        if self._enter(phase) and phase == "rise":
            self.on_surge_start()
        if self.target_rps > 0:
            users = self.steer(multiple, time.time())
            return users, max(users, 1)  # within one tick
        return max(1, round(self.base_users * multiple)), max(1, round(self.base_users * self.factor))

    def on_surge_start(self) -> None:
        env = self.runner.environment
        hooks = [*SURGE_HOOKS, *([lambda e: publish_articles(e, self.articles)] if self.articles else [])]
        for hook in hooks:
            gevent.spawn(hook, env)  # never block the shape's tick


def publish_articles(env: Environment, n: int, spread_s: float = 5.0, seed: int | None = None) -> int:
    """POST `n` new breaking articles to /v1/articles over `spread_s` (reported under its own name); returns how
    many were accepted. A 404 (endpoint not deployed) is logged once and stops the burst: the surge goes on."""
    rng, pick = np.random.default_rng(seed), random.Random(seed)
    session = FastHttpSession(env.host, request_event=env.events.request, user=None)
    subs, accepted = subcategory_list(), 0
    for _ in range(n):
        cat, sub = subs[pick.randrange(len(subs))]
        a = make_article(rng, f"N{7_000_000_000 + pick.randrange(10**9)}", cat, sub, breaking=True)
        body = {"news_id": a.news_id, "title": a.title, "abstract": a.abstract, "category": cat, "subcategory": sub}
        with session.post("/v1/articles", json=body, name=ARTICLES, catch_response=True) as r:
            if r.status_code == 404:
                r.request_meta["name"] = f"{ARTICLES} (404: not deployed)"
                r.success()
                log.warning("POST /v1/articles answered 404: no article burst in this surge")
                return accepted
            if 200 <= r.status_code < 300:
                accepted += 1
            else:
                r.failure(f"HTTP {r.status_code}: {r.text[:200] if r.text else ''}")
        gevent.sleep(spread_s / max(n, 1))
    log.info("published %d of %d breaking articles", accepted, n)
    return accepted


SHAPES: dict[str, type[LoadTestShape]] = {"steady": Steady, "ramp": Ramp, "surge": Surge}


def shape_from_env() -> type[LoadTestShape] | None:
    """The shape class NEWSREC_SHAPE names (steady | ramp | surge), or None: plain -u/-r/-t then apply."""
    name = os.environ.get("NEWSREC_SHAPE", "").strip().lower()
    if not name or name == "none":
        return None
    if name not in SHAPES:
        raise ValueError(f"NEWSREC_SHAPE={name!r}: choose one of {', '.join(SHAPES)} or none")
    return SHAPES[name]
