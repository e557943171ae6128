"""camera-edge-agent: connects self-installed IP cameras to the provincial camera center."""

__version__ = "0.1.0"
