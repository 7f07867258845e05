"""Pieces every ModelHub service shares: settings, server bootstrap, errors, auth, telemetry."""
