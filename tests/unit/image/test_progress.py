import json

from berth.image.progress import JSONProgress


def test_docker_json_stream():
    lines = []
    p = JSONProgress(lines.append)
    d = "sha256:" + "ab" * 32
    p.message("latest: Pulling from library/busybox")
    p.status(d, "Downloading", 100)
    p.advance(d, 40)
    p.advance(d, 10)  # within the report interval: coalesced
    p.status(d, "Pull complete", 100)
    p.error("pull x: boom")
    msgs = [json.loads(line) for line in lines]
    assert all(line.endswith(b"\r\n") for line in lines)
    assert msgs[0] == {"status": "latest: Pulling from library/busybox"}
    assert msgs[1] == {"status": "Downloading", "progressDetail": {}, "id": "abababababab"}
    assert msgs[2] == {"status": "Downloading", "progressDetail": {"current": 40, "total": 100},
                       "id": "abababababab"}
    assert msgs[3]["status"] == "Pull complete"
    assert msgs[4] == {"errorDetail": {"message": "pull x: boom"}, "error": "pull x: boom"}
