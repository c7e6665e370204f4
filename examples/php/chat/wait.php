<?php
// Long-poll without ZeroMQ: remember this connection, answer nobody yet.
// The empty X-Mongrel2-Deliver keeps the client waiting until say.php speaks.
$dir = sys_get_temp_dir() . '/m2bridge-chat';
@mkdir($dir, 0700);
touch($dir . '/' . intval($_SERVER['X_MONGREL2_CONN_ID']));
header('X-Mongrel2-Deliver:');
