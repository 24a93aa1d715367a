"""A tiny Buildbot www plugin: the waterfall is the landing page.

Buildbot 4.3's React UI always routes ``/`` to its Home view; the ``www['default_page']``
key is still accepted by the config loader but nothing reads it any more.  This plugin's
script (loaded by the UI like every www plugin's ``scripts.js``) sends a bare visit of
the UI's root to ``#/waterfall``.  ``#/`` (the Home menu entry) is left alone.
"""

from buildbot.www.plugin import Application

#: The entry point name (pyproject.toml, [project.entry-points."buildbot.www"]) and www plugin key.
NAME = "matrixgate_landing"

ep = Application(__name__, "Matrix Gate: the waterfall as landing page")
