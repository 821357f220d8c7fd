"""DELETE /v1/sandboxes/{id} while that id is still being created
(docs/agent-api.md): the delete wins. It waits for the create to give up,
answers 204 once the sandbox is dead (its teardown may still run), and the create's caller gets
409 "deleted while it was being created". conftest's leak check proves nothing
stays on the host (mounts, cgroups, runc state, processes, files)."""

import threading

from conftest import rand_suffix


def assert_nothing_left(agent, sid, what):
    """Checked once the agent's background teardowns have ended (leftovers()
    settles first), no other grace: nothing of the sandbox is left on the host.
    Processes killed a moment ago may await their reaping (zombies=False)."""
    left = agent.leftovers([sid], zombies=False)
    assert left == [], f"{what}, yet the host still has: {left}"


def create_in_thread(client, sid, out):
    def run():
        out["r"] = client.post("/v1/sandboxes", {"id": sid, "template": "host", "timeout": 600})
    t = threading.Thread(target=run)
    t.start()
    return t


def delete_as_soon_as_known(client, sid, create_thread):
    """DELETE until the agent knows the id (404 before the create reserved
    it); returns the first answer that is not 404, or the last 404 when the
    create ended (failed) before any DELETE saw it."""
    r = None
    while True:
        r = client.delete(f"/v1/sandboxes/{sid}", timeout=120)
        if r.status != 404 or not create_thread.is_alive():
            return r


def test_delete_racing_create_leaves_nothing(client, agent):
    raced = 0
    for i in range(12):
        sid = f"race-{rand_suffix(6)}-{i}"
        out = {}
        t = create_in_thread(client, sid, out)
        d = delete_as_soon_as_known(client, sid, t)
        if d.status == 204:
            # the DELETE answered: nothing is left now, and no create may
            # succeed after it (the create had finished, or it gives up)
            assert_nothing_left(agent, sid, "DELETE answered 204")
        t.join(120)
        assert not t.is_alive(), "the create never answered"
        c = out["r"]
        if c.status == 201:
            # The create finished first: the DELETE then removed a running sandbox.
            if d.status == 404:  # it saw nothing before the create reserved the id
                assert client.delete(f"/v1/sandboxes/{sid}").status == 204
                assert_nothing_left(agent, sid, "the second DELETE answered 204")
            else:
                assert d.status == 204, d
        else:
            # The DELETE came during the create: it won.
            assert c.status == 409, c
            assert "deleted while it was being created" in c.json()["message"], c
            # machine-readable: not an id in use, which a client (the operator) would adopt
            assert c.json().get("reason") == "Conflict", c
            assert d.status == 204, f"DELETE during create -> {d}"
            raced += 1
        assert_nothing_left(agent, sid, f"create {c.status}, DELETE {d.status}")
        assert client.get(f"/v1/sandboxes/{sid}").status == 404
        assert sid not in client.list_ids()
        if raced >= 3:
            break
    # A create takes tens of milliseconds at least (runc run, init ready),
    # while the DELETE loop polls without pause: the race is hit.
    assert raced >= 1, "no DELETE ever arrived during a create"


def test_second_delete_during_delete_waits_for_it(client, agent):
    """Two DELETEs of one sandbox: the first answers 204 once the sandbox is
    dead, and its teardown ends in the background (leftovers() waits for it);
    the second, arriving before the first answered, waits for it and answers
    204 too rather than 404. Arriving after the first answered, 404 is right:
    the sandbox is gone from the API then."""
    both = 0
    for _ in range(12):
        if both >= 2:
            break
        sid = client.create(timeout=600)["id"]
        out = {}

        def run():
            out["r"] = client.delete(f"/v1/sandboxes/{sid}")
            out["left"] = agent.leftovers([sid], zombies=False)
        t = threading.Thread(target=run)
        t.start()
        r2 = client.delete(f"/v1/sandboxes/{sid}")
        assert_nothing_left(agent, sid, f"the second DELETE answered {r2.status}")
        t.join(120)
        assert not t.is_alive(), "the first DELETE never answered"
        assert out["left"] == [], f"the first DELETE answered {out['r'].status}, yet the host had: {out['left']}"
        statuses = sorted([out["r"].status, r2.status])
        assert statuses in ([204, 204], [204, 404]), statuses
        both += statuses == [204, 204]
        assert client.get(f"/v1/sandboxes/{sid}").status == 404
    # Both requests leave at once and the kill takes a few ms (the pid namespace's
    # processes exit): some second DELETE comes during one.
    assert both >= 1, "no second DELETE ever arrived while the first ran"


def test_delete_of_unknown_id_is_still_404(client):
    r = client.delete(f"/v1/sandboxes/never-{rand_suffix(6)}")
    assert r.status == 404
