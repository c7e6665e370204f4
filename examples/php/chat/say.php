<?php
// Sends one message to every waiting client and to the speaker: one reply,
// many connections, through Mongrel2's deliver.
$dir = sys_get_temp_dir() . '/m2bridge-chat';
$ids = is_dir($dir) ? array_values(array_diff(scandir($dir), ['.', '..'])) : [];
foreach ($ids as $id) unlink("$dir/$id");
$ids[] = $_SERVER['X_MONGREL2_CONN_ID'];
header('X-Mongrel2-Deliver: ' . implode(' ', array_map('intval', $ids)));
header('Content-Type: text/plain; charset=utf-8');
$text = file_get_contents('php://input');
echo ($text === '' ? '(nothing)' : $text), "\n";
