<?php
sleep(intval($_GET['s'] ?? 3));
header('Content-Type: text/plain');
echo "slept\n";
