"""HOME for the container process when config.json has none, as runc sets it."""

import os

from berth.runtime.process import environ, home_of


def test_home_from_passwd_or_slash(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n"
                      "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
                      "odd:x:44:44::\n")
    assert home_of(0, str(passwd)) == "/root"
    assert home_of(33, str(passwd)) == "/var/www"
    assert home_of(44, str(passwd)) == "/"
    assert home_of(1000, str(passwd)) == "/"
    assert home_of(0, str(tmp_path / "missing")) == "/"


def test_a_fifo_or_directory_is_not_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert home_of(0, str(fifo)) == "/"  # returns at once: no writer is waited for
    assert home_of(0, str(tmp_path)) == "/"


def test_environ_keeps_a_given_home():
    assert environ({"env": ["HOME=/x", "A=1=2"]}) == {"HOME": "/x", "A": "1=2"}
