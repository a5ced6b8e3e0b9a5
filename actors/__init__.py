"""Workers that process exposures: plain classes, wrapped as Ray actors by the daemon."""
