"""The loop behind ``hrnet predict``: images decoded ahead of the model, predicted in groups, drawn and written
behind it, so the network never waits for a file (``Predictor.run`` uses it).

Three stages overlap: reader threads decode the next :data:`AHEAD` images (OpenCV releases the GIL while it
decodes), the predictor takes :data:`GROUP` images at once (:meth:`Predictor.predict_many`, which batches
person or face crops of several images into one network call), and one writer thread draws each result,
encodes the picture (or the video frame) and makes the record, in input order. A file that cannot be read
or written is logged and reported, and the rest go on, as with the plain loop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from ..files import VIDEO_SUFFIXES, read_image, write_image

if TYPE_CHECKING:
    from .base import Predictor

log = logging.getLogger("hrnet")

GROUP = 8
"""Images (or video frames) predicted together."""
AHEAD = 16
"""Images decoded ahead of the model, and results waiting to be written, at most."""
ERRORS = (ValueError, OSError, cv2.error)
"""What a bad input raises: it is reported and skipped."""

T = TypeVar("T")


def read_ahead(pool: ThreadPoolExecutor, read: Callable[[Path], T], paths: Iterable[Path],
               ahead: int = AHEAD) -> Iterator[tuple[Path, Future[T]]]:
    """``(path, future of read(path))`` in order, with up to ``ahead`` reads running in ``pool``."""
    pending: deque[tuple[Path, Future[T]]] = deque()
    for path in paths:
        pending.append((path, pool.submit(read, path)))
        if len(pending) >= ahead:
            yield pending.popleft()
    yield from pending


def first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class PredictLoop:
    """One ``hrnet predict`` run of ``predictor`` into ``out``: :meth:`images` and :meth:`video` return
    records in input order and note failures in ``failed`` as ``(file name, why)``."""

    def __init__(self, predictor: Predictor, out: Path, group: int = GROUP, ahead: int = AHEAD) -> None:
        self.predictor, self.out, self.group, self.ahead = predictor, out, group, ahead
        self.failed: list[tuple[str, str]] = []

    def _fail(self, path: Path, err: BaseException) -> None:
        log.warning("skipping %s: %s", path, err)
        self.failed.append((path.name, first_line(err)))

    def _predict_group(self, images: list[np.ndarray], paths: list[Path | None]) -> list[Any]:
        """Results of a group; when the group fails, image by image so that only the bad one is lost."""
        try:
            return self.predictor.predict_many(images, paths)
        except ERRORS:
            results = []
            for image, path in zip(images, paths):
                try:
                    results.append(self.predictor.predict(image, path))
                except ERRORS as err:
                    self._fail(path or Path("frame"), err)
                    results.append(err)
            return results

    def _write_image(self, path: Path, picture: Path, image: np.ndarray, result: Any) -> dict[str, Any]:
        write_image(picture, self.predictor.draw(image, result))
        return {"file": path.name, **self.predictor.record(result, self.out, path.stem)}

    def images(self, jobs: list[tuple[Path, Path]], bar: tqdm) -> list[dict[str, Any]]:
        """``(image file, picture to write)`` pairs -> their records (failed ones left out)."""
        written: deque[tuple[Path, Future[dict[str, Any]]]] = deque()
        records: list[dict[str, Any]] = []
        pictures = dict(jobs)

        def collect(limit: int) -> None:
            while len(written) > limit:
                path, done = written.popleft()
                try:
                    records.append(done.result())
                except ERRORS as err:
                    self._fail(path, err)

        def flush(group: list[tuple[Path, np.ndarray]]) -> None:
            results = self._predict_group([image for _, image in group], [path for path, _ in group])
            for (path, image), result in zip(group, results):
                if not isinstance(result, BaseException):
                    written.append((path, writer.submit(self._write_image, path, pictures[path], image, result)))
            bar.update(len(group))
            collect(self.ahead)

        with ThreadPoolExecutor(2, thread_name_prefix="hrnet-read") as readers, \
                ThreadPoolExecutor(1, thread_name_prefix="hrnet-write") as writer:
            group: list[tuple[Path, np.ndarray]] = []
            for path, decoded in read_ahead(readers, lambda p: read_image(str(p)), pictures, self.ahead):
                try:
                    group.append((path, decoded.result()))
                except ERRORS as err:
                    self._fail(path, err)
                    bar.update()
                if len(group) == self.group:
                    flush(group)
                    group = []
            if group:
                flush(group)
            collect(0)
        return records

    def video(self, path: Path, picture: Path) -> list[dict[str, Any]]:
        """Every frame of ``path`` predicted in groups and drawn into ``picture`` (written under a temporary
        name, then renamed); a frame that fails fails the video."""
        partial = picture.with_name(f".{picture.stem}.partial{picture.suffix}")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"video {path} unreadable (OpenCV could not open it)")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        state: dict[str, Any] = {"writer": None}
        records: list[Future[dict[str, Any]]] = []

        def read_group() -> list[np.ndarray]:
            frames = []
            while len(frames) < self.group:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            return frames

        def write_frame(index: int, image: np.ndarray, result: Any) -> dict[str, Any]:
            if state["writer"] is None:
                state["writer"] = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                  (image.shape[1], image.shape[0]))
            state["writer"].write(cv2.cvtColor(self.predictor.draw(image, result), cv2.COLOR_RGB2BGR))
            return {"file": path.name, "frame": index,
                    **self.predictor.record(result, self.out, f"{path.stem}_{index:06d}")}

        try:
            with ThreadPoolExecutor(1, thread_name_prefix="hrnet-read") as reader, \
                    ThreadPoolExecutor(1, thread_name_prefix="hrnet-write") as writer, \
                    tqdm(total=total, desc=path.name, unit="frame", disable=None, leave=False) as bar:
                upcoming = reader.submit(read_group)
                while frames := upcoming.result():
                    upcoming = reader.submit(read_group)
                    results = self.predictor.predict_many(frames, [None] * len(frames))
                    for image, result in zip(frames, results):
                        records.append(writer.submit(write_frame, len(records), image, result))
                    bar.update(len(frames))
                    if len(records) > self.ahead:
                        records[-self.ahead - 1].result()  # the writer keeps up before more frames are read
            done = [record.result() for record in records]
        finally:
            capture.release()
            if state["writer"] is not None:
                state["writer"].release()
        if state["writer"] is not None:
            partial.replace(picture)
        return done


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES
