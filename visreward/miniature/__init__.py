"""The miniatures: `visreward demo` for images, for video and for the judges, with the independent gold and the
HTML report."""
