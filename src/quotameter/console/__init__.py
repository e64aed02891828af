"""The console: server-rendered pages for org admins and operators, signed in with an API key.

`web` holds what every page shares (the session, the templates, people's numbers); each
page group has its module and registers its routes on `web.router`'s siblings, gathered
by `install`.
"""
