<?php
// Sends one reply to every held connection recorded in ?dir=, and to the requester.
$ids = array_diff(scandir($_GET['dir']), ['.', '..']);
$ids[] = $_SERVER['X_MONGREL2_CONN_ID'];
header('X-Mongrel2-Deliver: ' . implode(' ', $ids));
header('Content-Type: text/plain');
echo 'news for everyone';
