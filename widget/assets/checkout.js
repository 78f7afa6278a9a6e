// The hosted checkout page (placeholder until the pages branch lands).
