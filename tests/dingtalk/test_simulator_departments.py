"""dept_id_list sends in the simulator: sub-departments included, overlaps delivered once,
progress reported (what delivery.deptwide relies on)."""

from __future__ import annotations

from collections import Counter

from dingtalk import messages


def test_a_department_send_reaches_its_sub_departments_once_and_reports_progress(dt, client):
    directory = dt.sim.app().directory
    district, unit = 100, 200  # Central and Western, and its volunteers below it
    assert directory.children(district) == [unit]
    members = list(directory.iter_recipients([district]))
    assert set(directory.members(unit)) <= set(members)
    # The unit is listed as well as its parent: everyone still gets the notice once.
    sent = client.send(messages.text("Shelters open"), dept_ids=[district, unit])
    task = dt.sim.task(sent.task_id)
    assert task.total_recipients == directory.count_members([district]) == len(members)
    assert client.get_send_progress(sent.task_id).status == 1
    dt.sim.advance(5)
    assert client.get_send_progress(sent.task_id).done
    counts = Counter(len(dt.sim.inbox(userid)) for userid in members)
    assert counts == Counter({1: len(members)})
    outside = directory.userid_for(2)  # generated user 2 sits in the next district (101)
    assert outside not in members
    assert dt.sim.inbox(outside) == []
