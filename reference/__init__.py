"""Reference solutions: the same modules as exercises/, solved. 参考答案：与 exercises/ 同名、同签名。"""
