"""Multi-object tracker: ByteTrack-style two-stage IoU association with constant-velocity prediction.

Why this shape: at the 5-10 fps we run on a Raspberry Pi, boxes of moving vehicles overlap little
between frames, so each track predicts where its box is now (velocity from its last matches) before
IoU matching. Low-score detections (which a plain threshold would drop) are used in a second pass to
keep existing tracks alive through partial occlusion, as ByteTrack does. Tracks that miss frames are
kept "lost" for ``max_lost_s`` with their id, so a found-again object keeps its id and its
rule state (no double counting). Matching is restricted to class groups (a cyclist yields a person
box and a bicycle box at the same place; they must stay two tracks).

Pure Python + tuples: tens of boxes per frame cost well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Box = tuple[float, float, float, float]

CLASS_GROUPS: dict[str, str] = {
    "person": "person",
    "bicycle": "two_wheeler",
    "motorcycle": "two_wheeler",
    "car": "vehicle",
    "bus": "vehicle",
    "truck": "vehicle",
}


class DetectionLike(Protocol):
    """What the tracker needs from a detection (agent.detect.model.Detection satisfies it)."""

    @property
    def label(self) -> str: ...
    @property
    def class_id(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def box(self) -> Box: ...


@dataclass(frozen=True)
class TrackerConfig:
    high_score: Mapping[str, float] = field(default_factory=dict)
    """Per-class score from which a detection may start or first-match a track (default 0.5)."""
    default_high_score: float = 0.5
    low_score: float = 0.15
    """Detections below this are ignored entirely."""
    match_iou: float = 0.2
    """Stage 1 (high-score detections vs confirmed/lost tracks): minimum IoU with the prediction."""
    low_match_iou: float = 0.4
    """Stage 2 (low-score detections vs confirmed tracks still unmatched)."""
    tentative_match_iou: float = 0.3
    min_hits: int = 2
    """Matches needed before a track is confirmed and reported."""
    max_lost_s: float = 1.5
    """How long a confirmed track survives without a match (keeps its id when found again)."""
    velocity_smoothing: float = 0.5


def iou(a: Box, b: Box) -> float:
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    iw, ih = ix2 - ix1, iy2 - iy1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(eq=False)
class Track:
    """One tracked object. ``box`` is the last matched detection box (pixels of the input image)."""

    track_id: int
    label: str
    class_id: int
    box: Box
    score: float
    first_ts: float
    last_ts: float
    hits: int = 1
    confirmed: bool = False
    vx: float = 0.0
    vy: float = 0.0
    votes: dict[str, float] = field(default_factory=dict)
    class_ids: dict[str, int] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return CLASS_GROUPS.get(self.label, self.label)

    def predicted(self, ts: float) -> Box:
        dt = max(0.0, ts - self.last_ts)
        dx, dy = self.vx * dt, self.vy * dt
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def _vote(self, det: DetectionLike) -> None:
        self.votes[det.label] = self.votes.get(det.label, 0.0) + det.score
        self.class_ids[det.label] = det.class_id
        best = max(self.votes, key=lambda k: self.votes[k])
        self.label, self.class_id = best, self.class_ids[best]

    def update(self, det: DetectionLike, ts: float, smoothing: float) -> None:
        dt = ts - self.last_ts
        if dt > 1e-6:
            ox, oy = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
            nx, ny = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
            mvx, mvy = (nx - ox) / dt, (ny - oy) / dt
            if self.hits == 1:
                self.vx, self.vy = mvx, mvy
            else:
                self.vx = smoothing * self.vx + (1 - smoothing) * mvx
                self.vy = smoothing * self.vy + (1 - smoothing) * mvy
        self.box = tuple(float(c) for c in det.box)  # type: ignore[assignment]
        self.score = float(det.score)
        self.last_ts = ts
        self.hits += 1
        self._vote(det)


@dataclass
class TrackerOutput:
    active: list[Track]
    """Confirmed tracks matched in this frame (what rules and the preview use)."""
    lost: list[Track]
    """Confirmed tracks not matched in this frame but still kept."""
    removed: list[Track]
    """Confirmed tracks dropped in this update (their rule state can be finalized)."""


def _greedy_match(
    tracks: Sequence[Track], dets: Sequence[DetectionLike], ts: float, min_iou: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Greedy best-IoU-first assignment within class groups. Returns (pairs, free tracks, free dets)."""
    cand: list[tuple[float, int, int]] = []
    preds = [t.predicted(ts) for t in tracks]
    for ti, t in enumerate(tracks):
        g = t.group
        for di, d in enumerate(dets):
            if CLASS_GROUPS.get(d.label, d.label) != g:
                continue
            v = iou(preds[ti], d.box)
            if v >= min_iou:
                cand.append((v, ti, di))
    cand.sort(key=lambda c: -c[0])
    used_t: set[int] = set()
    used_d: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for _, ti, di in cand:
        if ti in used_t or di in used_d:
            continue
        used_t.add(ti)
        used_d.add(di)
        pairs.append((ti, di))
    return (
        pairs,
        [i for i in range(len(tracks)) if i not in used_t],
        [i for i in range(len(dets)) if i not in used_d],
    )


class Tracker:
    """Stateful tracker for one camera. Not thread-safe: call from one task."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[Track] = []  # confirmed and lost
        self._tentative: list[Track] = []
        self._next_id = 1
        self._last_ts: float | None = None

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def reset(self) -> list[Track]:
        """Forget everything (camera moved, stream restarted). Returns the confirmed tracks dropped."""
        dropped = self._tracks
        self._tracks, self._tentative, self._last_ts = [], [], None
        return dropped

    def _is_high(self, d: DetectionLike) -> bool:
        return d.score >= self.config.high_score.get(d.label, self.config.default_high_score)

    def update(self, detections: Sequence[DetectionLike], ts: float) -> TrackerOutput:
        cfg = self.config
        removed: list[Track] = []
        if self._last_ts is not None and ts < self._last_ts:
            removed = self.reset()  # time went backwards (file looped, stream restarted)
        self._last_ts = ts
        dets = [d for d in detections if d.score >= cfg.low_score]
        high = [d for d in dets if self._is_high(d)]
        low = [d for d in dets if not self._is_high(d)]

        # Stage 1: high-score detections vs confirmed + lost tracks.
        pairs, free_t, free_h = _greedy_match(self._tracks, high, ts, cfg.match_iou)
        matched: set[int] = set()
        for ti, di in pairs:
            self._tracks[ti].update(high[di], ts, cfg.velocity_smoothing)
            matched.add(ti)
        # Stage 2: low-score detections keep recently seen tracks alive (occlusion, blur).
        remaining = [self._tracks[i] for i in free_t]
        pairs2, _, _ = _greedy_match(remaining, low, ts, cfg.low_match_iou)
        for ti, di in pairs2:
            remaining[ti].update(low[di], ts, cfg.velocity_smoothing)
            matched.add(free_t[ti])
        # Stage 3: leftover high detections vs tentative tracks; unmatched tentatives die.
        rest = [high[i] for i in free_h]
        pairs3, _, free_r = _greedy_match(self._tentative, rest, ts, cfg.tentative_match_iou)
        survivors: list[Track] = []
        for ti, di in pairs3:
            t = self._tentative[ti]
            t.update(rest[di], ts, cfg.velocity_smoothing)
            if t.hits >= cfg.min_hits:
                t.confirmed = True
                self._tracks.append(t)
                matched.add(len(self._tracks) - 1)
            else:
                survivors.append(t)
        self._tentative = survivors
        for di in free_r:
            d = rest[di]
            t = Track(
                track_id=self._next_id,
                label=d.label,
                class_id=d.class_id,
                box=tuple(float(c) for c in d.box),  # type: ignore[arg-type]
                score=float(d.score),
                first_ts=ts,
                last_ts=ts,
            )
            t._vote(d)
            self._next_id += 1
            if cfg.min_hits <= 1:
                t.confirmed = True
                self._tracks.append(t)
                matched.add(len(self._tracks) - 1)
            else:
                self._tentative.append(t)

        active: list[Track] = []
        lost: list[Track] = []
        kept: list[Track] = []
        for i, t in enumerate(self._tracks):
            if i in matched:
                active.append(t)
                kept.append(t)
            elif ts - t.last_ts > cfg.max_lost_s:
                removed.append(t)
            else:
                lost.append(t)
                kept.append(t)
        self._tracks = kept
        return TrackerOutput(active=active, lost=lost, removed=removed)
