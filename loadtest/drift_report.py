"""The figures of `newsrec bench drift` from its raw points: per event and system, the pre-event nDCG@10 and CTR,
the longest stretch below 90% of the pre-event nDCG@10 (the recovery target is <= 5 world minutes), post-event
means (all active readers; the shifted ones; those whose post-shift clicks the stream carried), whether the online
system beats both frozen ones; the same figures for the ceiling (what the best possible system could have served,
where the window holds the interest shift); and the curves over time (PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

RECOVERY_SHARE = 0.9
RECOVERY_TARGET_MIN = 5.0


def _below_stretches(t: np.ndarray, ok: np.ndarray, end_s: float) -> tuple[float, bool]:
    """(longest run of not-ok instants in minutes, measured up to the next ok instant or end_s; whether the
    last instant is ok)."""
    longest, since = 0.0, None
    for ti, good in zip(t, ok):
        if not good and since is None:
            since = ti
        elif good and since is not None:
            longest, since = max(longest, (ti - since) / 60), None
    if since is not None:
        longest = max(longest, (end_s - since) / 60)
    return longest, bool(ok[-1]) if ok.size else False


def event_summary(points: list[dict], system: str, t_event: float, pre_s: float, post_end_s: float) -> dict:
    """Instants with no active reader are left out. The 90% line is the mean pre-event nDCG@10 of the readers
    active in each pre-event minute: the same kind of reader as after it."""
    pts = sorted((p for p in points if p["system"] == system and p["ndcg10"] is not None), key=lambda p: p["t_s"])
    t = np.array([p["t_s"] for p in pts])
    ndcg, ctr = np.array([p["ndcg10"] for p in pts]), np.array([p["ctr"] for p in pts])
    pre = (t >= t_event - pre_s) & (t < t_event)
    post = (t >= t_event) & (t < post_end_s)
    if not pre.any() or not post.any():
        return {"measured": False}
    level = float(ndcg[pre].mean())
    longest, recovered = _below_stretches(t[post], ndcg[post] >= RECOVERY_SHARE * level, post_end_s)
    first_ok = t[post][ndcg[post] >= RECOVERY_SHARE * level]
    first5 = post & (t < t_event + RECOVERY_TARGET_MIN * 60)

    def post_mean(key: str) -> float | None:
        vals = [p[key] for p, after in zip(pts, post) if after and p.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    return {"measured": True, "pre_ndcg10": level, "pre_ctr": float(ctr[pre].mean()),
            "post_ndcg10": float(ndcg[post].mean()), "post_ctr": float(ctr[post].mean()),
            "first5_ndcg10": float(ndcg[first5].mean()) if first5.any() else None,
            "min_post_ndcg10": float(ndcg[post].min()),
            "first_at_90pct_min": float((first_ok[0] - t_event) / 60) if first_ok.size else None,
            "longest_below_90pct_min": float(longest), "at_90pct_at_end": recovered,
            "recovery_target_met": bool(longest <= RECOVERY_TARGET_MIN and recovered),
            "post_ndcg10_shifted_readers": post_mean("ndcg10_shifted"),
            "post_ndcg10_informed_readers": post_mean("ndcg10_informed"),
            "readers_per_instant": float(np.median([p["readers"] for p in pts])),
            "instants": int(post.sum() + pre.sum())}


def ceiling_share(points: list[dict], system: str, ceiling: str, t_event: float, pre_s: float,
                  post_end_s: float) -> dict:
    """The system's nDCG@10 over the ceiling's at each instant both measured: its mean before the event, over the
    first 5 minutes after it (and that as a share of before), and the minutes after it below 90% of before."""
    best = {p["t_s"]: p["ndcg10"] for p in points if p["system"] == ceiling and p["ndcg10"]}
    pairs = sorted((p["t_s"], p["ndcg10"] / best[p["t_s"]]) for p in points
                   if p["system"] == system and p["ndcg10"] is not None and p["t_s"] in best)
    t, share = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    pre, post = (t >= t_event - pre_s) & (t < t_event), (t >= t_event) & (t < post_end_s)
    first5 = post & (t < t_event + RECOVERY_TARGET_MIN * 60)
    if not pre.any() or not first5.any():
        return {"measured": False}
    level = float(share[pre].mean())
    return {"measured": True, "pre": level, "first5": float(share[first5].mean()),
            "first5_of_pre": float(share[first5].mean() / level),
            "minutes_below_90pct_of_pre": int((share[post] < RECOVERY_SHARE * level).sum()),
            "minutes_after": int(post.sum())}


def summarize(results: dict) -> None:
    """Adds `summary` to every window: {event name: {system: event_summary, "online_beats_both": ...}}."""
    pre_s = float(results["config"]["pre_min"]) * 60
    post_s = float(results["config"]["post_min"]) * 60
    for w in results["windows"]:
        times = [e["time_s"] for e in w["events"]]
        w["summary"] = {}
        for i, e in enumerate(w["events"]):
            end = min([e["time_s"] + post_s, *times[i + 1:]])
            per = {s: event_summary(w["points"], s, e["time_s"], pre_s, end) for s in results["systems"]}
            ceiling = results.get("ceiling")
            if ceiling and (c := event_summary(w["points"], ceiling, e["time_s"], pre_s, end)).get("measured"):
                per[ceiling] = c  # the best any system could do: the recovery target's own ceiling
                for s in results["systems"]:
                    if per[s].get("measured"):
                        per[s]["share_of_ceiling"] = ceiling_share(w["points"], s, ceiling, e["time_s"], pre_s, end)
            on = per["online"]
            if on.get("measured") and all(per[s].get("measured") for s in ("features_streamed", "frozen")):
                per["online_beats_both"] = {m: bool(all(on[m] > per[s][m] for s in ("features_streamed", "frozen")))
                                            for m in ("post_ndcg10", "post_ctr")}
            w["summary"][e["name"]] = per


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wins = results["windows"]
    fig, axes = plt.subplots(2, len(wins), figsize=(7 * len(wins), 7), squeeze=False, sharex="col")
    colors = {"online": "tab:green", "features_streamed": "tab:blue", "frozen": "tab:gray"}
    for j, w in enumerate(wins):
        t0 = w["events"][0]["time_s"]
        for i, metric in enumerate(("ndcg10", "ctr")):
            ax = axes[i][j]
            for s in (*results["systems"], results.get("ceiling")):
                pts = sorted((p for p in w["points"] if p["system"] == s), key=lambda p: p["t_s"])
                pts = [p for p in pts if p[metric] is not None]
                if not pts:
                    continue
                ceiling = s == results.get("ceiling")
                ax.plot([(p["t_s"] - t0) / 60 for p in pts], [p[metric] for p in pts],
                        label=f"{s} (not served: the best any system could know)" if ceiling else s,
                        color=colors.get(s, "black"), marker="" if ceiling else ".",
                        linestyle="--" if ceiling else "-", linewidth=1.0 if ceiling else 1.2)
            for e in w["events"]:
                ax.axvline((e["time_s"] - t0) / 60, color="red", linestyle="--", linewidth=0.8)
                ax.annotate(e["name"], ((e["time_s"] - t0) / 60, 1.0), xycoords=("data", "axes fraction"),
                            fontsize=7, rotation=90, va="top", ha="right")
            for p in w.get("promotions", []):
                ax.axvline((p["t_s"] - t0) / 60, color="tab:green", alpha=0.25, linewidth=0.6)
            if metric == "ndcg10":
                first = w["summary"].get(w["events"][0]["name"], {}).get("online", {})
                if first.get("measured"):
                    ax.axhline(RECOVERY_SHARE * first["pre_ndcg10"], color="tab:green", linestyle=":",
                               linewidth=0.8, label="90% of online pre-event")
                best = w["summary"].get(w["events"][0]["name"], {}).get(results.get("ceiling"), {})
                if best.get("measured"):
                    ax.axhline(RECOVERY_SHARE * best["pre_ndcg10"], color="black", linestyle=":", linewidth=0.8,
                               label="90% of the ceiling's pre-event")
            ax.set_ylabel({"ndcg10": "nDCG@10 (true relevance)", "ctr": "CTR (true click prob., top 10)"}[metric]
                          + "\nreaders active that minute")
            ax.grid(True, alpha=0.3)
            if i == 1:
                ax.set_xlabel(f"world minutes from {w['events'][0]['name']} (green ticks: promoted versions)")
        axes[0][j].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=2, frameon=False)
    fig.suptitle("newsrec bench drift: online learning vs streamed features only vs fully frozen")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
