<?php
// bench/longpoll.sh: one reply, "news TAG\n", delivered to every held connection and to the
// speaker, through one X-Mongrel2-Deliver header (m2bridge splits it into 128-id messages).
$id = (int)($_SERVER['X_MONGREL2_CONN_ID'] ?? 0);
$ids = preg_split('/\s+/', file_get_contents(getenv('LONGPOLL_HOLDS')), -1, PREG_SPLIT_NO_EMPTY);
$ids[] = $id;
header('Content-Type: text/plain');
header('X-Mongrel2-Deliver: ' . implode(' ', $ids));
echo 'news ', (int)($_GET['tag'] ?? 0), "\n";
