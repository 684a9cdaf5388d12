"""nbgrader settings of the xattn course; this folder is the course root.

Instructors run the standard ``nbgrader`` commands and JupyterLab's Formgrader from this folder (see
docs/instructor.md). The course's settings (stub text, timeouts, the grading and feedback steps) are
defined once, in ``xattn_edu.grader.settings.course_config``, which ``xattn build``, ``xattn grade`` and
``xattn grade-class`` use as well, with this file read on top: add site settings (exchange folder,
LMS file names, a longer timeout) at the end, and every grader here follows them.

This file sets no environment variable: fast mode reaches grading kernels only, never the kernels of
a JupyterLab started here.
"""

import os

from xattn_edu.grader.nbgrader_fixes import find_alembic_head_in_process
from xattn_edu.grader.settings import course_config

c = get_config()  # noqa: F821  (nbgrader provides get_config when it loads this file)
c.merge(course_config())
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# nbgrader 0.9.6 runs `alembic` from PATH to create a gradebook; without it (JupyterLab started by its
# full path) the Formgrader stays on "Loading…". This reads the migration head in-process instead.
find_alembic_head_in_process()

# Site settings below, e.g.
# c.Exchange.root = "/srv/nbgrader/exchange"
