"""What a camera app shows per frame: a text line (or a JSON object), or an overlay in a window.

``Output(headless=False, as_json=False)`` opens a window only where one can be shown (a display
server and an OpenCV with a GUI backend); otherwise it prints. ``Output.frame(...)`` returns False
when the user closed the window (``q`` or Esc). Device-side: OpenCV, Python 3.8.
"""
import json
import os
import sys
from typing import Any, Dict, List, Optional

WINDOW = "inception-deploy"


def display_available(headless: bool) -> bool:
    """A window can be shown: not headless, a display server, and an OpenCV with a GUI backend."""
    if headless:
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return "NONE" not in line
    return True


def overlay(image: Any, lines: List[str]) -> None:
    """White text with a dark outline, top-left, one line per entry (drawn into ``image``)."""
    import cv2

    for i, text in enumerate(lines):
        org = (10, 28 + 26 * i)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)


def text_line(index: int, predictions: List[Any], fps: float, ms: float) -> str:
    top = ", ".join("%s %.1f%%" % (p.label_name, 100 * p.probability) for p in predictions) or "(below threshold)"
    return "frame %5d  %6.1f fps  %6.2f ms  %s" % (index, fps, ms, top)


def json_line(index: int, predictions: List[Any], fps: float, ms: float, profile: Optional[Dict[str, Any]] = None,
              shadow: Optional[Dict[str, Any]] = None) -> str:
    record: Dict[str, Any] = {"frame": index, "fps": round(fps, 2), "ms": round(ms, 3),
                              "top": [{"label_id": p.label_id, "label": p.label, "name": p.label_name,
                                       "probability": round(p.probability, 6)} for p in predictions]}
    if profile:
        record["profile_ms"] = profile
    if shadow:
        record["shadow"] = shadow
    return json.dumps(record)


class Output:
    def __init__(self, headless: bool = False, as_json: bool = False) -> None:
        self.window = display_available(headless)
        self.as_json = as_json

    def frame(self, image: Any, index: int, predictions: List[Any], profiler: Any,
              shadow: Optional[Dict[str, Any]] = None) -> bool:
        """Show or print one frame's result; False when the user asked to quit."""
        means = profiler.means()
        ms = sum(v for k, v in means.items() if k != "capture")
        if not self.window:
            line = (json_line(index, predictions, profiler.fps, ms, {k: round(v, 3) for k, v in means.items()}, shadow)
                    if self.as_json else text_line(index, predictions, profiler.fps, ms))
            print(line, flush=True)
            return True
        import cv2
        lines = [profiler.line()] + ["%5.1f%% %s" % (100 * p.probability, p.label_name) for p in predictions]
        overlay(image, lines)
        cv2.imshow(WINDOW, image)
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        if self.window:
            import cv2
            cv2.destroyAllWindows()
