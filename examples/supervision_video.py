"""Annotate a video with supervision's box and label annotators (pip install supervision).

    python examples/supervision_video.py /usr/share/doc/opencv-doc/examples/data/vtest.avi out.mp4 --frames 60

`Tracker.update_detections` takes and returns `sv.Detections`; the proposals here are
examples/real_video.py's background-subtraction boxes (put your detector's `sv.Detections` there).
"""
import argparse
import itertools
import sys

import cv2
import supervision as sv

from examples.real_video import VTEST, detect
from models.tracker import Tracker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", default=VTEST)
    parser.add_argument("out", nargs="?", default="outputs/real_video/annotated.mp4")
    parser.add_argument("--weights", default="weights/synthetic_small.pth")
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args(argv)
    tracker = Tracker.from_checkpoint(args.weights)          # settings from the model card beside the weights
    subtractor = cv2.createBackgroundSubtractorMOG2(history=100, detectShadows=True)
    boxes, labels = sv.BoxAnnotator(), sv.LabelAnnotator()
    with sv.VideoSink(args.out, sv.VideoInfo.from_video_path(args.video)) as sink:
        for frame in itertools.islice(sv.get_video_frames_generator(args.video), args.frames):
            dets = detect(frame, subtractor)                  # (N, 5) x1, y1, x2, y2, conf
            proposals = sv.Detections(xyxy=dets[:, :4], confidence=dets[:, 4])
            tracks = tracker.update_detections(proposals, frame)   # tracker_id, confidence, class_id
            text = [f"#{i} {c:.2f}" for i, c in zip(tracks.tracker_id, tracks.confidence)]
            frame = boxes.annotate(frame.copy(), tracks)
            sink.write_frame(labels.annotate(frame, tracks, labels=text))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
