"""Workers that process exposures: plain classes, usable without Ray."""
