"""The in-app channel: a server-sent-events stream per customer of the notices addressed in-app."""
