// The card frame (placeholder until the pages branch lands).
