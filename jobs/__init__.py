"""RQ entry points. Jobs take primitive ids, reload rows and are safe to run twice."""
