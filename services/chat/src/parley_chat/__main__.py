from parley_chat.app import main

main()
