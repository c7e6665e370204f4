<?php
// bench/longpoll.sh: a long-poll. Records this connection's id (one 12-byte record, so the
// driver counts them from the file size) and holds the connection with an empty
// X-Mongrel2-Deliver: m2bridge answers nobody and keeps it open for a later delivery.
$id = (int)($_SERVER['X_MONGREL2_CONN_ID'] ?? 0);
if ($id <= 0) { http_response_code(500); echo "no X_MONGREL2_CONN_ID\n"; exit; }
file_put_contents(getenv('LONGPOLL_HOLDS'), sprintf("%11d\n", $id), FILE_APPEND | LOCK_EX);
header('X-Mongrel2-Deliver:');
