"""The online half of `newsrec demo`: the world's features in Redis, the stream workers and an API replica running,
then a walk-through over HTTP that shows a click and a breaking story taking effect, timed, in seconds or less."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import typer

from newsrec.services import ServiceEndpoints


def _poll(check, timeout_s: float = 15.0, every_s: float = 0.05):
    """Call check() until it returns something truthy; (value, seconds waited) or (None, timeout)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if value := check():
            return value, time.perf_counter() - started
        time.sleep(every_s)
    return None, timeout_s


def _feed(client: httpx.Client, user_id: str) -> dict:
    return client.get("/v1/recommend", params={"user_id": user_id, "k": 10}).raise_for_status().json()


def _show(client: httpx.Client, rec: dict) -> None:
    ids = [item["news_id"] for item in rec["items"]]
    meta = {a["news_id"]: a for a in
            client.get("/v1/articles", params={"ids": ",".join(ids)}).raise_for_status().json()["articles"]}
    for i, item in enumerate(rec["items"], 1):
        title = meta.get(item["news_id"], {}).get("title", "")[:60]
        typer.echo(f"  {i:>2}. {item['news_id']:<12} {item['category']:<14} {item['score']:>7.3f}  {title}")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in rec["timings_ms"].items())
    typer.echo(f"  source={rec['source']} model={rec['model_version']} index=v{rec['index_version']}  ms: {stages}")


def walkthrough(url: str) -> None:
    """A reader's feed, a click that changes it, a breaking story that becomes retrievable; each effect timed."""
    with httpx.Client(base_url=url, timeout=10.0) as client:
        reader = client.get("/v1/readers", params={"n": 1}).raise_for_status().json()["readers"][0]
        rec = _feed(client, reader)
        typer.echo(f"\nfeed of reader {reader}:")
        _show(client, rec)

        clicked = rec["items"][0]["news_id"]
        event = {"type": "click", "event_id": f"demo-{uuid.uuid4().hex}", "user_id": reader, "news_id": clicked}
        client.post("/v1/events", json={"events": [event]}).raise_for_status()
        def without_click() -> dict | None:
            r = _feed(client, reader)
            return r if clicked not in [i["news_id"] for i in r["items"]] else None

        changed, waited = _poll(without_click)
        typer.echo(f"\n{reader} clicked {clicked} (Kafka -> feature worker -> Redis); the next feed no longer has it "
                   f"and is re-ranked from the new history after {waited:.2f} s:" if changed else
                   f"\nthe click on {clicked} did not show within {waited:.0f} s (is the feature worker running?)")
        if changed:
            _show(client, changed)

        topics = client.get("/v1/topics").raise_for_status().json()["topics"]
        category = rec["items"][0]["category"]  # the reader's own top topic
        subcategory = next(t["subcategories"][0] for t in topics if t["category"] == category)
        story = {"title": "Breaking: storm makes landfall, thousands without power",
                 "abstract": "Crews are working through the night as the storm moves inland.",
                 "category": category, "subcategory": subcategory}
        news_id = client.post("/v1/articles", json=story).raise_for_status().json()["news_id"]
        live, waited = _poll(lambda: client.get(f"/v1/articles/{news_id}/status").json().get("live"))
        typer.echo(f"\npublished breaking story {news_id} ({category}/{subcategory}) on Kafka `articles`: "
                   + (f"in the live index after {waited:.2f} s (item tower -> item-vectors -> replica)" if live
                      else f"not live after {waited:.0f} s"))


def run_live(world: Path, registry: Path, endpoints: ServiceEndpoints, state: Path, wait: bool) -> None:
    """Materialize, start workers (features, articles, trainer) and one API replica, walk through, then serve
    until Ctrl-C (wait=True) and stop exactly the processes started here."""
    from feature_store.materialize import materialize_world
    from loadtest.stream_stack import StackConfig, StreamStack

    stats = materialize_world(world, endpoints.redis_url, "demo")
    typer.echo(f"features in Redis (prefix demo): {stats}")
    cfg = StackConfig(world=world, registry=registry, redis_url=endpoints.redis_url,
                      bootstrap=endpoints.kafka_bootstrap, prefix="demo", log_dir=state / "logs", replicas=1,
                      features_worker=True, trainer_worker=True)
    with StreamStack(cfg) as stack:
        url = stack.replicas[0]
        typer.echo(f"running: API {url} + workers features, articles, trainer (logs: {cfg.log_dir})")
        walkthrough(url)
        typer.secho(f"\nThe news app page: {url}/   API docs: {url}/docs   metrics: {url}/metrics", fg="green",
                    bold=True)
        if not wait:
            return
        typer.echo("Serving until Ctrl-C (then the API and workers stop; `make down` stops Redis and the broker).")
        try:
            while all(p.poll() is None for p in stack.procs):
                time.sleep(1.0)
            typer.secho("a stack process exited; stopping (see the logs above)", fg="red", err=True)
        except KeyboardInterrupt:
            typer.echo("\nstopping")
