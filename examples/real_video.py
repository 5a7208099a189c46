"""Track people in a real video with the shipped model and proposals from OpenCV alone (no download).

    apt-get install opencv-doc        # Debian / Ubuntu: ships OpenCV's sample street video vtest.avi
    python examples/real_video.py /usr/share/doc/opencv-doc/examples/data/vtest.avi --frames 60

Proposals come from OpenCV's background subtractor (MOG2: moving blobs of a fixed camera); OpenCV
5 dropped the HOG people detector this once used (with OpenCV 4.x, `cv2.HOGDescriptor` works as well:
`detect` below is the only part to change). The tracker is `Tracker.from_checkpoint` with no
config: the model card beside the weights gives the input size and thresholds. Writes
`<output_dir>/<stem>.txt` (MOTChallenge lines) and `<stem>_tracked.mp4`, and prints tracks per
frame, ids and seconds per frame.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from models.tracker import Tracker
from tools.visualize import draw_tracks

REPO = Path(__file__).resolve().parents[1]
VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def detect(frame_bgr: np.ndarray, subtractor, min_area: int = 600) -> np.ndarray:
    """`(N, 5)` x1, y1, x2, y2, conf: the moving blobs of one frame taller than wide (people)."""
    mask = subtractor.apply(frame_bgr)
    mask = np.where(mask == 255, 255, 0).astype(np.uint8)  # 127 = shadow
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.dilate(mask, np.ones((9, 5), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = [cv2.boundingRect(c) for c in contours]
    rows = [(x, y, x + w, y + h, 0.9) for x, y, w, h in boxes if w * h >= min_area and h >= w]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", default=VTEST)
    parser.add_argument("--weights", default=str(REPO / "weights" / "synthetic_small.pth"))
    parser.add_argument("--frames", type=int, default=60, help="track at most this many frames")
    parser.add_argument("--output_dir", default=os.path.join("outputs", "real_video"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        print(f"error: cannot open {args.video} (apt-get install opencv-doc ships vtest.avi)", file=sys.stderr)
        return 2
    tracker = Tracker.from_checkpoint(args.weights, device=args.device)
    print(f"settings from {tracker.settings_source}; input {tracker.input_size}")
    subtractor = cv2.createBackgroundSubtractorMOG2(history=100, detectShadows=True)
    os.makedirs(args.output_dir, exist_ok=True)
    stem = Path(args.video).stem
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer, lines, per_frame, proposals, seconds = None, [], [], [], 0.0
    for frame in range(1, args.frames + 1):
        ok, img = cap.read()
        if not ok:
            break
        dets = detect(img, subtractor)
        start = time.perf_counter()
        tracks = tracker.update(dets, img)
        seconds += time.perf_counter() - start
        per_frame.append(len(tracks))
        proposals.append(len(dets))
        boxes = [(int(t[4]), t[0], t[1], t[2] - t[0], t[3] - t[1]) for t in tracks]
        lines += [f"{frame},{i},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,-1,-1,-1\n" for i, x, y, w, h in boxes]
        if writer is None:
            writer = cv2.VideoWriter(os.path.join(args.output_dir, f"{stem}_tracked.mp4"),
                                     cv2.VideoWriter_fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
        writer.write(draw_tracks(img, boxes))
    cap.release()
    if writer is not None:
        writer.release()
    with open(os.path.join(args.output_dir, f"{stem}.txt"), "w") as f:
        f.writelines(lines)
    n = len(per_frame)
    ids = {int(line.split(",")[1]) for line in lines}
    print(f"{n} frames: {np.mean(proposals):.1f} proposals and {np.mean(per_frame):.1f} tracks a frame, "
          f"{len(ids)} ids, {seconds / max(n, 1):.3f} s a frame (tracking only) -> {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
