<?php
// Waits (at most 20 s) until the file ?release exists, then answers. With ?dir=, first records
// this connection's id there; just before answering it creates ?release + ".done".
if (isset($_GET['dir'])) file_put_contents($_GET['dir'] . '/' . $_SERVER['X_MONGREL2_CONN_ID'], '');
$end = microtime(true) + 20;
while (microtime(true) < $end) {
    clearstatcache();
    if (file_exists($_GET['release'])) break;
    usleep(20000);
}
file_put_contents($_GET['release'] . '.done', '');
header('Content-Type: text/plain');
echo "released on " . $_SERVER['X_MONGREL2_CONN_ID'] . "\n";
