"""clinicflow: ETL for clinics. Library messages log at INFO unless the application sets another level."""

import logging as _logging

if _logging.getLogger(__name__).level == _logging.NOTSET:
    _logging.getLogger(__name__).setLevel(_logging.INFO)
