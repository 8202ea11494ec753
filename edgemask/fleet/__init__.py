"""Fleet deployment: the on-device agent and the controller that drives it.

Device side (slim runtime, Python 3.8, no torch, no asyncssh):
:mod:`.layout` (folders of an install root), :mod:`.state` (the agent's state
file), :mod:`.switch` (the atomic ``current`` symlink), :mod:`.agent_config`
(``agent.toml``), :mod:`.selftest`, :mod:`.health`, :mod:`.agent` (install,
commit, rollback, boot-check, status).

Controller side (``edgemask[fleet]``): :mod:`.inventory`, :mod:`.waves`,
:mod:`.journal`, :mod:`.controller` (asyncssh), :mod:`.ansible`.
"""
