"""Names that the grader (host side) and the notebooks' kernels agree on.

Both sides import them from here, so they cannot drift apart; neither side imports the other.
"""

FAST_ENV = "XATTN_FAST"
"""Environment variable: ``1`` makes notebooks shrink their experiments (graders set it for their kernels)."""

SEED_ENV = "XATTN_GRADE_SEED"
"""Environment variable set only in a grading kernel: the seed of this grading run's hidden inputs."""

RECORD_MIME = "application/vnd.xattn.record+json"
"""MIME type of the display output in which a test cell publishes what the student's code returned."""

FLAG_MIME = "application/vnd.xattn.flags+json"
"""MIME type of the output in which the grader notes, for the instructor, what the submission scan flagged."""

MAX_RECORD_BYTES = 8 << 20
"""A record larger than this is refused (a real one is a few kB)."""
