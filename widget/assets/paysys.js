// PaySys.mount (placeholder until the pages branch lands).
