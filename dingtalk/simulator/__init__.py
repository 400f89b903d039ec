"""A DingTalk simulator: the project's training mode, demo back end and test fake.

Serves the oapi endpoints the portal uses (gettoken, asyncsend_v2, getsendprogress,
getsendresult, recall, status_bar/update, media/upload, department listsub/listsubid, user
listid/listsimple, v2/user/list, v2/user/get) in DingTalk's wire format and enforces the
documented limits (see :class:`dingtalk.simulator.config.Limits`), including the silent ones
that show up only as ``forbidden_list`` entries of ``getsendresult``.

Entry points (import each from its module; this package exports nothing):

- ``python -m dingtalk.simulator --port 8900`` (asyncio server; ``--help`` for options);
- :func:`dingtalk.simulator.wsgi.wsgi_app` for any WSGI server;
- :func:`dingtalk.simulator.testing.running_simulator` for tests;
- :class:`dingtalk.simulator.simulator.Simulator` itself: ``handle(method, path, query,
  headers, body)`` plus control methods (``advance``, ``set_limits``, ``set_faults``,
  ``inject``, ``revoke_tokens``, ``ban_ip``, ``mark_read``, ``inbox``, ``counters``,
  ``requests``, ``directory_event``...).

Demo apps and their credentials are listed in :mod:`dingtalk.simulator.config`; the HTTP
control endpoints under ``/_sim/`` in :mod:`dingtalk.simulator.control`; the modules in the
order a request passes through them in ``dingtalk/README.md``.
"""
